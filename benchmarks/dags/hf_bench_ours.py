"""Benchmark DAG `hf_bench_ours` (B1 makespan, B4 dispatch): `render_batch(backend="lambda")`.

Runs on a real Airflow stack against a moto server standing in for AWS (the benchmark passes its
`AIRFLOW_CONN_HYPERFRAMES_DEFAULT` to every component). Each row's variables choose how long its
execution lasts on the test state machine (`hfTestSeconds` N, or `hfTestFate: "hang"`). Settings
come from the stack's environment, read when the file is parsed: pool `HF_BENCH_OURS_POOL`,
`max_concurrent=HF_BENCH_MAX_CONCURRENT` (the row count, so only the pool caps),
`poll_interval=HF_BENCH_POLL_INTERVAL`. The naive DAG lives in its own file
(`hf_bench_naive.py`) so it never depends on this package being importable.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param

from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

REPO = Path(__file__).resolve().parents[2]
WELCOME = REPO / "examples" / "templates" / "welcome"
CONN_ID = "hyperframes_default"

OURS_POOL = os.environ.get("HF_BENCH_OURS_POOL", "bench_ours")
MAX_CONCURRENT = int(os.environ.get("HF_BENCH_MAX_CONCURRENT", "200"))
POLL_INTERVAL = float(os.environ.get("HF_BENCH_POLL_INTERVAL", "5"))

with DAG(
    dag_id="hf_bench_ours",
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
        conn_id=CONN_ID,
        pool=OURS_POOL,
        max_concurrent=MAX_CONCURRENT,
        poll_interval=POLL_INTERVAL,
    )
