"""Benchmark DAGs for `render_batch(backend="lambda")` against a moto server (B1, B4, scale).

- `hf_bench_ours`: one mapped render task per row (the default);
- `hf_bench_lanes`: lanes, `rows_per_task=HF_BENCH_ROWS_PER_TASK` (default 10);
- `hf_bench_wide`: wide tasks, `renders_per_task=HF_BENCH_RENDERS_PER_TASK` (default 10): each
  task renders that many rows at once in as many pool slots.

The benchmark passes the moto server's `AIRFLOW_CONN_HYPERFRAMES_DEFAULT` to every component.
Each row's variables choose how long its execution lasts on the test state machine
(`hfTestSeconds` N, or `hfTestFate: "hang"`). Settings, read when the file is parsed: pools
`HF_BENCH_OURS_POOL` / `HF_BENCH_LANES_POOL` / `HF_BENCH_WIDE_POOL`,
`max_concurrent=HF_BENCH_MAX_CONCURRENT` (far above the pool, so only the pool caps),
`poll_interval=HF_BENCH_POLL_INTERVAL` (the watcher's longest gap; default the factory's own).
Only `airflow.sdk` and `hyperframes_airflow.batch` are imported, as a DAG author's file would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param

from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

REPO = Path(__file__).resolve().parents[2]
WELCOME = REPO / "examples" / "templates" / "welcome"

MAX_CONCURRENT = int(os.environ.get("HF_BENCH_MAX_CONCURRENT", "100000"))
POLL = os.environ.get("HF_BENCH_POLL_INTERVAL")
COMMON: dict[str, Any] = {"poll_interval": float(POLL)} if POLL else {}
VARIANTS: dict[str, dict[str, Any]] = {
    "hf_bench_ours": {"pool": os.environ.get("HF_BENCH_OURS_POOL", "bench_ours")},
    "hf_bench_lanes": {
        "pool": os.environ.get("HF_BENCH_LANES_POOL", "bench_lanes"),
        "rows_per_task": int(os.environ.get("HF_BENCH_ROWS_PER_TASK", "10")),
    },
    "hf_bench_wide": {
        "pool": os.environ.get("HF_BENCH_WIDE_POOL", "bench_wide"),
        "renders_per_task": int(os.environ.get("HF_BENCH_RENDERS_PER_TASK", "10")),
    },
}

for dag_id, options in VARIANTS.items():
    with DAG(
        dag_id=dag_id,
        schedule=None,
        catchup=False,
        max_active_runs=1,
        tags=["hyperframes", "benchmark"],
        params={
            "batch": Param("", type="string", description="Batch JSONL URI (s3://...)"),
            "project": Param(str(WELCOME), type="string"),
        },
        doc_md=__doc__,
    ):
        render_batch(
            project_dir="{{ params.project }}",
            batch="{{ params.batch }}",
            config=RenderConfig(width=640, height=360, fps=30),
            backend="lambda",
            max_concurrent=MAX_CONCURRENT,
            # The benchmark passes its own temp dirs through params (trigger-form input).
            allowed_roots=[str(REPO / "examples"), tempfile.gettempdir()],
            **COMMON,
            **options,
        )
