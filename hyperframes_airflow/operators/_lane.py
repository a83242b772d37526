"""A render task's lane: its rows, read from prepare_batch's `lane.<map_index>` XCom."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.contract.rows import Lane
from hyperframes_airflow.xcom import lane_key


def pull_lane(ti: Any, prepare_task_id: str) -> Lane:
    """This task instance's rows (one small XCom read: never the whole batch's plan)."""
    map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else 0
    rows = ti.xcom_pull(task_ids=prepare_task_id, key=lane_key(map_index))
    if not isinstance(rows, list):
        raise AirflowFailException(
            f"prepare_batch left no rows for render task {map_index} ({lane_key(map_index)})"
        )
    return Lane.model_validate({"rows": rows})
