"""Stack-test DAGs: the Lambda render_batch against a moto server standing in for AWS.

There is no AWS account here: `devstack/moto_stack.py` runs a real `moto_server` process with a
bucket and a state machine shaped like the HyperFrames stack, and the test passes its
`AIRFLOW_CONN_HYPERFRAMES_DEFAULT` to every Airflow component. Each row's variables choose its
fate on that state machine (`hfTestFate` succeed|fail|hang, `hfTestSeconds` N).

- `hf_stack_lambda`: the plain factory. Everything a test varies comes from the run conf
  (batch, project, dry_run, max_cost_usd, confirm_cost, force_rerender). Renders go through the
  `hyperframes_renders` pool (the test creates it with include_deferred); the per-run cap is set
  far above it, so only the pool can hold renders back.
- `hf_stack_lambda_lanes`: the plain factory with `rows_per_task=3` (lanes).
- `hf_stack_lambda_wide`: `rows_per_task=4, renders_per_task=2`: each task renders two rows at
  once in two pool slots.
- `hf_stack_lambda_crash`: the same, with one retry after 2 s, and a render trigger that dies
  right after its StartExecution on try 1 for lanes whose first output key contains `crash`
  (`hf_stack_support.py`): the window a real crash can hit, where the execution exists but
  nothing in Airflow knows it yet. Killing a process from outside could not hit a window that
  is milliseconds wide, so the trigger fails itself there.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from airflow.sdk import DAG, Param
from hf_stack_support import CrashAfterStartRenderOperator

import hyperframes_airflow.batch as batch_factory
from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

REPO = Path(__file__).resolve().parents[2]
WELCOME = REPO / "examples" / "templates" / "welcome"

PARAMS = {
    "batch": Param("", type="string", description="Batch JSONL URI (s3://<bucket>/...)"),
    "project": Param(str(WELCOME), type="string", description="HyperFrames project directory"),
    "dry_run": Param(False, type="boolean"),
    "max_cost_usd": Param(None, type=["null", "number"]),
    "confirm_cost": Param(False, type="boolean"),
    "force_rerender": Param(False, type="boolean"),
}


def _batch_group(**options: Any) -> None:
    render_batch(
        project_dir="{{ params.project }}",
        batch="{{ params.batch }}",
        config=RenderConfig(width=640, height=360, fps=30),
        backend="lambda",
        dry_run="{{ params.dry_run }}",
        max_cost_usd="{{ params.max_cost_usd }}",
        confirm_cost="{{ params.confirm_cost }}",
        force_rerender="{{ params.force_rerender }}",
        pool="hyperframes_renders",
        allowed_roots=[tempfile.gettempdir(), str(REPO)],  # tests pass their own projects
        max_concurrent=50,
        poll_interval=1.0,
        progress_interval=5,
        # Above max_cost_usd a manual run waits for an answer this long (tests set it short).
        approval_timeout=timedelta(seconds=float(os.environ.get("HF_STACK_APPROVAL_S", "3600"))),
        **options,
    )


def _dag(dag_id: str) -> DAG:
    """The stack-test DAGs' shared settings (each holds one render_batch group)."""
    return DAG(
        dag_id=dag_id,
        schedule=None,
        catchup=False,
        max_active_runs=4,
        render_template_as_native_obj=True,  # an unset max_cost_usd renders None, not "None"
        tags=["hyperframes", "test"],
        params=PARAMS,
        doc_md=__doc__,
    )


with _dag("hf_stack_lambda"):
    _batch_group()

# render_batch has no operator-class argument (a test-only need): swap the class it uses for
# the length of this one DAG definition.
with (
    mock.patch.dict(batch_factory.RENDER_OPERATORS, {"lambda": CrashAfterStartRenderOperator}),
    _dag("hf_stack_lambda_crash"),
):
    _batch_group(render_retries=1, render_retry_delay=timedelta(seconds=2))

# Lanes: three consecutive rows per render task, each started by the trigger the moment the
# previous one ends (tests/stack/test_lanes_stack.py).
with _dag("hf_stack_lambda_lanes"):
    _batch_group(rows_per_task=3)

# Wide tasks: four rows per render task, two rendering at once in two pool slots.
with _dag("hf_stack_lambda_wide"):
    _batch_group(rows_per_task=4, renders_per_task=2)
