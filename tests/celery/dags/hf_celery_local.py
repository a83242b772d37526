"""Celery-stack DAG: the local backend rendering into an object-store root.

Tests trigger it with `conf={"batch": ..., "project_dir": ..., "local_root": "s3://..."}`; the
`hyperframes_default` connection (from the stack's environment) reaches the bucket. Renders go
through the `hyperframes_renders` pool, two at a time, and a render task whose worker dies is
retried once, soon (the scheduler notices the dead task by its missing heartbeats).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

with DAG(
    dag_id="hf_celery_local",
    schedule=None,
    catchup=False,
    max_active_runs=2,
    tags=["hyperframes", "test"],
    params={
        "batch": Param("", type="string", description="Batch JSONL path"),
        "project_dir": Param("", type="string"),
        "local_root": Param("", type="string", description="s3://bucket/prefix"),
    },
    doc_md=__doc__,
):
    render_batch(
        project_dir="{{ params.project_dir }}",
        batch="{{ params.batch }}",
        config=RenderConfig(width=640, height=360, fps=30),
        backend="local",
        conn_id="hyperframes_default",
        local_root="{{ params.local_root }}",
        max_concurrent=2,
        pool="hyperframes_renders",
        render_retries=1,
        render_retry_delay=timedelta(seconds=2),
    )
