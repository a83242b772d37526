"""Benchmark DAG `hf_bench_floor`: Airflow's floor for B1 (makespan) and B4 (dispatch).

A `@task` returns N items; `DeferAtOnceOperator` (`bench_floor.py`) is mapped over them in the
pool `HF_BENCH_FLOOR_POOL`: each task instance defers at once to a trigger that sleeps
`seconds` and ends the task from the triggerer. No AWS, no render code: only Airflow.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param, task
from bench_floor import DeferAtOnceOperator

FLOOR_POOL = os.environ.get("HF_BENCH_FLOOR_POOL", "bench_floor")


@task
def items(rows: int, seconds: float) -> list[dict[str, float]]:
    """One mapping entry per row (what a batch's mapping would be)."""
    return [{"seconds": float(seconds)} for _ in range(int(rows))]


with DAG(
    dag_id="hf_bench_floor",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["hyperframes", "benchmark"],
    params={"rows": Param(200, type="integer"), "seconds": Param(10, type="number")},
    render_template_as_native_obj=True,
    doc_md=__doc__,
):
    DeferAtOnceOperator.partial(
        task_id="render", pool=FLOOR_POOL, max_active_tis_per_dagrun=100_000
    ).expand_kwargs(items("{{ params.rows }}", "{{ params.seconds }}"))  # type: ignore[arg-type]
