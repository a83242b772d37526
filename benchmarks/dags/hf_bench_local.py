"""Benchmark DAGs for `render_batch(backend="local")` (B5): real renders on the worker.

- `hf_bench_local`: one render task per row (each a `hyperframes render` process);
- `hf_bench_local_lanes`: lanes of `HF_BENCH_LOCAL_ROWS_PER_TASK` rows, each rendered by one
  `hyperframes render --batch` process.

The pool is `HF_BENCH_LOCAL_POOL`; the run conf gives the batch, the project and the output root.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param

from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

WELCOME = Path(__file__).resolve().parents[2] / "examples" / "templates" / "welcome"
POOL = os.environ.get("HF_BENCH_LOCAL_POOL", "bench_local")
VARIANTS: dict[str, dict[str, Any]] = {
    "hf_bench_local": {},
    "hf_bench_local_lanes": {
        "rows_per_task": int(os.environ.get("HF_BENCH_LOCAL_ROWS_PER_TASK", "5"))
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
            "batch": Param("", type="string"),
            "project_dir": Param(str(WELCOME), type="string"),
            "local_root": Param("/tmp/hf-bench-local", type="string"),
        },
        doc_md=__doc__,
    ):
        render_batch(
            project_dir="{{ params.project_dir }}",
            batch="{{ params.batch }}",
            # The benchmark passes its own temp dirs through params (trigger-form input).
            allowed_roots=[str(WELCOME.parent.parent), tempfile.gettempdir()],
            config=RenderConfig(width=640, height=360, fps=30),
            backend="local",
            local_root="{{ params.local_root }}",
            max_concurrent=100,
            pool=POOL,
            **options,
        )
