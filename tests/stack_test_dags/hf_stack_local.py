"""Stack-test DAG: the local render_batch, pointed anywhere through run conf.

Tests trigger it with `conf={"batch": ..., "project_dir": ..., "local_root": ...}` so each test
renders its own rows into its own directory. Renders go through the `hyperframes_renders` pool
(the test creates it with include_deferred). The per-run cap comes from `HF_STACK_MAX_CONCURRENT`
(default 2): tests that check the *pool* cap set it above the pool's slots, so only the pool can
be what holds renders back.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from airflow.sdk import DAG, Param

from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

REPO = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("AIRFLOW_HOME", "."))

with DAG(
    dag_id="hf_stack_local",
    schedule=None,
    catchup=False,
    max_active_runs=4,
    tags=["hyperframes", "test"],
    params={
        "batch": Param("", type="string", description="Batch JSONL path"),
        "project_dir": Param(str(REPO / "examples" / "templates" / "welcome"), type="string"),
        "local_root": Param(str(HOME / "hf-output"), type="string"),
        "dry_run": Param(False, type="boolean"),
    },
    doc_md=__doc__,
):
    render_batch(
        project_dir="{{ params.project_dir }}",
        batch="{{ params.batch }}",
        config=RenderConfig(width=640, height=360, fps=30),
        backend="local",
        local_root="{{ params.local_root }}",
        allowed_roots=[tempfile.gettempdir(), str(HOME), str(REPO)],  # tests pass their own dirs
        dry_run="{{ params.dry_run }}",
        max_concurrent=int(os.environ.get("HF_STACK_MAX_CONCURRENT", "2")),
        pool="hyperframes_renders",
    )
