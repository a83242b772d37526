"""Lambda lanes on a real Airflow stack: exactly once across a triggerer crash, kill mid-lane,
and the pool cap with lanes; the same for wide tasks (`renders_per_task=2`: DAG
`hf_stack_lambda_wide`, four rows per task, two rendering at once in two pool slots).

A lane is one render task holding several rows (`rows_per_task=3`, DAG `hf_stack_lambda_lanes`
in tests/stack_test_dags/hf_stack_lambda.py); its trigger starts each row the moment the one
before ends. moto plays AWS (a real `moto_server`, calls counted); the Airflow components are
real (api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor), one stack for the
module. `dag.test()` could show none of this: it runs triggers inline and never kills one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from devstack.airflow_stack import RENDER_POOL, RENDER_TASK_ID, STACK_DAGS, AirflowStack
from devstack.moto_stack import MotoStack

pytestmark = pytest.mark.slow

DAG_ID = "hf_stack_lambda_lanes"
WIDE_DAG_ID = "hf_stack_lambda_wide"
POOL_SLOTS = 2


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoStack]:
    with MotoStack(count_calls=True) as server:
        yield server


@pytest.fixture(scope="module")
def stack(moto: MotoStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    env = {
        **moto.airflow_conn_env(),
        # A crashed triggerer's triggers move to a live one once it misses this many seconds
        # of heartbeats (default 30): shorter here so the crash test does not wait for long.
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
    }
    with AirflowStack(
        tmp_path_factory.mktemp("airflow-home-lanes"), STACK_DAGS, env=env, stop_timeout_s=8
    ) as running:
        running.create_pool(RENDER_POOL, POOL_SLOTS, include_deferred=True)
        for dag_id in (DAG_ID, WIDE_DAG_ID):
            running.wait_for_dag(dag_id)
            running.unpause(dag_id)
        yield running
        sfn = moto.boto3_client("stepfunctions")
        left = _executions(moto, status="RUNNING")
        for execution in left:
            sfn.stop_execution(executionArn=execution["executionArn"])
        assert left == [], f"executions left RUNNING: {left}"


def _put_batch(moto: MotoStack, key: str, rows: Sequence[dict[str, Any]]) -> str:
    body = "".join(json.dumps(r) + "\n" for r in rows)
    moto.boto3_client("s3").put_object(Bucket=moto.bucket, Key=key, Body=body.encode())
    return f"s3://{moto.bucket}/{key}"


def _manifest_rows(moto: MotoStack, run_id: str, dag_id: str = DAG_ID) -> dict[str, dict[str, Any]]:
    from hyperframes_airflow.backends.base import manifest_name

    key = f"manifests/{manifest_name(dag_id, run_id, 'render_batch')}"
    body = moto.boto3_client("s3").get_object(Bucket=moto.bucket, Key=key)["Body"].read()
    return {r["outputKey"]: r for r in json.loads(body)["rows"]}


def _executions(moto: MotoStack, *, status: str | None = None) -> list[dict[str, Any]]:
    sfn = moto.boto3_client("stepfunctions")
    kwargs: dict[str, Any] = {"stateMachineArn": moto.state_machine_arn}
    if status:
        kwargs["statusFilter"] = status
    found: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(**kwargs):
        found.extend(page["executions"])
    return found


def _executions_for(moto: MotoStack, prefix: str) -> list[dict[str, Any]]:
    """DescribeExecution of every execution whose output key starts with `prefix`."""
    sfn = moto.boto3_client("stepfunctions")
    wanted = f"s3://{moto.bucket}/{prefix}"
    found = []
    for execution in _executions(moto):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if json.loads(described["input"])["OutputS3Uri"].startswith(wanted):
            found.append(described)
    return found


def _wait_for(what: str, check: Callable[[], Any], timeout: float, poll_s: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll_s)


def _running(moto: MotoStack, prefix: str) -> list[str]:
    return [e["executionArn"] for e in _executions_for(moto, prefix) if e["status"] == "RUNNING"]


def _peak_running_until_done(
    stack: AirflowStack, moto: MotoStack, dag_id: str, run_id: str, prefix: str
) -> int:
    """The most executions under `prefix` seen running at once until the run ends."""
    peak = 0
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        peak = max(peak, len(_running(moto, prefix)))
        if stack.dag_run(dag_id, run_id)["state"] in ("success", "failed"):
            break
        time.sleep(0.3)
    return peak


@pytest.mark.timeout(240)
def test_a_lane_survives_its_triggerer_crashing_mid_lane(
    stack: AirflowStack, moto: MotoStack
) -> None:
    """The triggerer dies (SIGKILL) while a lane's second row renders; a new triggerer takes the
    trigger over, walks the lane again and finds what was already started: every row rendered
    exactly once, the run succeeds."""
    keys = [f"restart/{i}.mp4" for i in range(3)]
    batch = _put_batch(
        moto,
        "batches/restart.jsonl",
        [{"outputKey": k, "variables": {"hfTestSeconds": 5}} for k in keys],
    )
    run_id = stack.trigger(DAG_ID, {"batch": batch})
    _wait_for("the lane's second row to render", lambda: _running(moto, keys[1]), timeout=120)
    stack.crash("triggerer")
    crashed_at = time.monotonic()
    time.sleep(2)
    stack.restart("triggerer")
    assert stack.wait_for_run(DAG_ID, run_id, timeout=180) == "success"
    resumed = time.monotonic() - crashed_at
    rows = _manifest_rows(moto, run_id)
    assert [rows[k]["status"] for k in keys] == ["succeeded"] * 3, rows
    for key in keys:
        executions = _executions_for(moto, key)
        assert len(executions) == 1, (key, [e["name"] for e in executions])
        assert executions[0]["status"] == "SUCCEEDED"
    print(f"triggerer crash mid-lane: run done {resumed:.1f} s after the crash, 3 executions")


@pytest.mark.timeout(180)
def test_killing_a_lane_aborts_its_render_and_records_every_row(
    stack: AirflowStack, moto: MotoStack
) -> None:
    keys = ["kill/0.mp4", "kill/1.mp4", "kill/2.mp4"]
    batch = _put_batch(
        moto,
        "batches/kill-lane.jsonl",
        [
            {"outputKey": keys[0], "variables": {"hfTestSeconds": 1}},
            {"outputKey": keys[1], "variables": {"hfTestFate": "hang"}},
            {"outputKey": keys[2]},
        ],
    )
    run_id = stack.trigger(DAG_ID, {"batch": batch})
    [arn] = _wait_for(
        "the lane's hanging row to render", lambda: _running(moto, keys[1]), timeout=120
    )
    time.sleep(1)  # the trigger's task is deferred and its trigger running
    stack.patch_task_instance_state(DAG_ID, run_id, RENDER_TASK_ID, "failed", map_index=0)
    t0 = time.monotonic()
    _wait_for(
        "the running render to stop", lambda: not _running(moto, keys[1]), timeout=30, poll_s=0.1
    )
    stopped_after = time.monotonic() - t0
    assert stack.wait_for_run(DAG_ID, run_id, timeout=120) == "failed"
    rows = _manifest_rows(moto, run_id)
    assert [rows[k]["status"] for k in keys] == ["succeeded", "aborted", "skipped"], rows
    assert rows[keys[1]]["executionArn"] == arn
    assert _executions_for(moto, keys[2]) == []  # the row after the kill never started
    print(f"mark-failed mid-lane -> ABORTED in {stopped_after:.2f} s")


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("dag_id", "rows", "tasks"),
    [
        pytest.param(DAG_ID, 12, 4, id="lanes of 3, one slot each"),
        pytest.param(WIDE_DAG_ID, 8, 2, id="wide tasks of 4, two slots each"),
    ],
)
def test_the_pool_caps_running_renders_with_lanes(
    stack: AirflowStack, moto: MotoStack, dag_id: str, rows: int, tasks: int
) -> None:
    """Lanes (4 tasks of 3 rows) and wide tasks (2 tasks of 4 rows rendering 2 at once in 2
    slots) through the 2-slot pool: never more than 2 renders running, and 2 reached (so a
    wide task does run two at once); every row rendered once."""
    prefix = f"cap-{dag_id}/"
    batch = [
        {"outputKey": f"{prefix}{i}.mp4", "variables": {"hfTestSeconds": 2}} for i in range(rows)
    ]
    run_id = stack.trigger(
        dag_id, {"batch": _put_batch(moto, f"batches/cap-{dag_id}.jsonl", batch)}
    )
    peak = _peak_running_until_done(stack, moto, dag_id, run_id, prefix)
    assert stack.dag_run(dag_id, run_id)["state"] == "success"
    statuses = [r["status"] for r in _manifest_rows(moto, run_id, dag_id).values()]
    assert statuses == ["succeeded"] * rows
    assert len(_executions_for(moto, prefix)) == rows
    assert peak == POOL_SLOTS, peak
    found = stack.task_instances(dag_id, run_id, RENDER_TASK_ID)
    assert len(found) == tasks and all(t.try_number == 1 for t in found)


@pytest.mark.timeout(180)
def test_killing_a_wide_task_aborts_both_renders_and_records_every_row(
    stack: AirflowStack, moto: MotoStack
) -> None:
    """Rows 0 and 1 render together and hang; marking the task failed stops both (ABORTED)
    and records rows 2 and 3, which never started, as skipped."""
    keys = [f"wide-kill/{i}.mp4" for i in range(4)]
    fates = [{"hfTestFate": "hang"}, {"hfTestFate": "hang"}, {}, {}]
    batch = _put_batch(
        moto,
        "batches/wide-kill.jsonl",
        [{"outputKey": k, "variables": v} for k, v in zip(keys, fates, strict=True)],
    )
    run_id = stack.trigger(WIDE_DAG_ID, {"batch": batch})
    _wait_for(
        "both hanging rows to render",
        lambda: len(_running(moto, "wide-kill/")) == 2,
        timeout=120,
    )
    arns = {k: _running(moto, k)[0] for k in keys[:2]}
    time.sleep(1)
    stack.patch_task_instance_state(WIDE_DAG_ID, run_id, RENDER_TASK_ID, "failed", map_index=0)
    _wait_for(
        "both renders to stop", lambda: not _running(moto, "wide-kill/"), timeout=30, poll_s=0.1
    )
    assert stack.wait_for_run(WIDE_DAG_ID, run_id, timeout=120) == "failed"
    rows = _manifest_rows(moto, run_id, WIDE_DAG_ID)
    assert [rows[k]["status"] for k in keys] == ["aborted", "aborted", "skipped", "skipped"]
    assert {k: rows[k]["executionArn"] for k in keys[:2]} == arns
    assert _executions_for(moto, keys[2]) == [] and _executions_for(moto, keys[3]) == []


@pytest.mark.timeout(240)
def test_a_wide_task_survives_its_triggerer_crashing(stack: AirflowStack, moto: MotoStack) -> None:
    """The triggerer dies while a wide task renders its second pair; the new triggerer finds
    the four rows' executions by name: each rendered exactly once, the run succeeds."""
    keys = [f"wide-restart/{i}.mp4" for i in range(4)]
    batch = _put_batch(
        moto,
        "batches/wide-restart.jsonl",
        [{"outputKey": k, "variables": {"hfTestSeconds": 5}} for k in keys],
    )
    run_id = stack.trigger(WIDE_DAG_ID, {"batch": batch})
    _wait_for(
        "the second pair to render",
        lambda: _running(moto, keys[2]) or _running(moto, keys[3]),
        timeout=120,
    )
    stack.crash("triggerer")
    time.sleep(2)
    stack.restart("triggerer")
    assert stack.wait_for_run(WIDE_DAG_ID, run_id, timeout=180) == "success"
    rows = _manifest_rows(moto, run_id, WIDE_DAG_ID)
    assert [rows[k]["status"] for k in keys] == ["succeeded"] * 4, rows
    for key in keys:
        executions = _executions_for(moto, key)
        assert len(executions) == 1, (key, [e["name"] for e in executions])
