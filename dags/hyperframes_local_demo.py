"""Local demo: render the example template for every row of the example batch, on this machine.

Run by the README's first command (`scripts/demo.sh`). Outputs land under `output/` in the repo,
laid out like the Lambda bucket (`sites/<siteId>/`, then each row's outputKey), with the manifest
at `output/manifests/hyperframes_local_demo/<run_id>.json`. Each run's "HyperFrames batch" tab
shows its rows live; `dags/hyperframes_notify.py` runs on every manifest it writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param

from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

with DAG(
    dag_id="hyperframes_local_demo",
    schedule=None,
    catchup=False,
    tags=["hyperframes", "example"],
    params={
        "batch": Param(
            str(EXAMPLES / "batches" / "welcome.jsonl"),
            type="string",
            title="Batch JSONL",
            description='One row per video: {"outputKey": ..., "variables": {...}}',
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Validate and estimate only; render nothing",
        ),
        "force_rerender": Param(
            False,
            type="boolean",
            title="Force re-render",
            description="Render rows again even if already rendered",
        ),
        "rerun_failed_of": Param(
            "",
            type="string",
            title="Rerun failed rows of",
            description="A manifest path: render only its rows that did not succeed",
            section="Rerun",
        ),
    },
    doc_md=__doc__,
):
    render_batch(
        project_dir=str(EXAMPLES / "templates" / "welcome"),
        batch="{{ params.batch }}",
        config=RenderConfig(width=640, height=360, fps=30),
        backend="local",
        local_root=os.environ.get("HYPERFRAMES_LOCAL_ROOT", str(REPO / "output")),
        allowed_roots=[str(EXAMPLES)],  # where a batch typed into the form may be
        max_concurrent=2,
        dry_run="{{ params.dry_run }}",
        force_rerender="{{ params.force_rerender }}",
        rerun_of="{{ params.rerun_failed_of }}",
    )
