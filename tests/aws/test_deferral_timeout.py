"""A deferral timeout must not leave the render running (the task fails before our code runs).

The Step Functions side is real (moto server). The Airflow side is the operator's own
`resume_execution`, called the way the task runner calls it on a timeout; the task instance is
a small stand-in holding XComs in a dict, because making a real trigger time out needs a real
stack and a long wait for one code path.
"""

from __future__ import annotations

from typing import Any

import pytest

from hyperframes_airflow.backends.base import RenderJob
from hyperframes_airflow.backends.lambda_ import LambdaBackend
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.operators.render import EXECUTION_KEY, HyperframesRenderOperator
from hyperframes_airflow.triggers.render import ROW_RESULT_KEY
from devstack.moto_stack import MotoStack, eventually


class _XComTI:
    """Stand-in task instance: XCom push/pull for this one task only."""

    def __init__(self) -> None:
        self.map_index = 0
        self.store: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.store[key] = value

    def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> Any:
        return self.store.get(key)


def test_deferral_timeout_stops_the_execution_and_records_timed_out(hf_conn: MotoStack) -> None:
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
    from airflow.sdk.exceptions import TaskDeferralTimeout

    backend = LambdaBackend()
    job = RenderJob(
        7,
        "timeout/a.mp4",
        "hf-timeout-test-a",
        "0" * 16,
        RenderConfig(width=640, height=360, fps=30).to_wire(),
        {"hfTestFate": "hang"},
    )
    outcome = backend.ensure_started(job)
    execution = {
        "line": 7,
        "outputKey": job.output_key,
        "outputUri": "s3://x/timeout/a.mp4",
        "executionName": outcome.execution_name,
        "executionArn": outcome.execution_arn,
        "attempt": 1,
    }
    ti = _XComTI()
    ti.store[EXECUTION_KEY] = execution
    ti.store[ROW_RESULT_KEY] = []
    operator = HyperframesRenderOperator(
        task_id="render",
        rows=[{"line": 7, "outputKey": job.output_key}],
        backend="lambda",
        render_timeout_s=5,
    )
    with pytest.raises(TaskDeferralTimeout):
        operator.resume_execution(
            TRIGGER_FAIL_REPR,
            {"error": TriggerFailureReason.TRIGGER_TIMEOUT},
            {"ti": ti},  # type: ignore[typeddict-item]
        )
    status = eventually(lambda: backend.status(outcome.execution_arn), lambda s: s != "RUNNING")
    assert status == "ABORTED"
    (row,) = ti.store[ROW_RESULT_KEY]
    assert row["status"] == "timed-out" and row["inputLine"] == 7
    assert row["executionArn"] == outcome.execution_arn and "5" in row["cause"]
