"""A weekly personalised digest: one video per customer, from a batch produced upstream.

Every Monday an upstream job writes `s3://<bucket>/digests/<ds>.jsonl` (one row per customer,
output keys under `digests/<ds>/`). This DAG renders that week's file on the Lambda stack and
writes `s3://<bucket>/manifests/hyperframes_weekly_digest/<run_id>.json`. No catch-up storm:
missed weeks are not replayed, and only one week renders at a time.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

BUCKET = os.environ.get("HYPERFRAMES_DIGEST_BUCKET", "my-render-bucket")
TEMPLATE = os.environ.get("HYPERFRAMES_DIGEST_TEMPLATE", "/opt/airflow/templates/digest")

with DAG(
    dag_id="hyperframes_weekly_digest",
    schedule="0 6 * * MON",
    start_date=pendulum.datetime(2026, 1, 5, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["hyperframes"],
    doc_md=__doc__,
):
    render_batch(
        project_dir=TEMPLATE,
        batch=f"s3://{BUCKET}/digests/{{{{ ds }}}}.jsonl",
        config=RenderConfig(width=1280, height=720, fps=30),
        backend="lambda",
        conn_id="hyperframes_default",
        max_concurrent=32,
        strict=False,  # a bad customer row must not block everyone else's digest
        strict_variables=True,
        max_cost_usd=50.0,  # scheduled runs cannot be confirmed by hand: raise this to allow more
    )
