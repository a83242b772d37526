"""The Lambda backend on a real Airflow stack: what `dag.test()` cannot show.

moto stands in for AWS (there is no AWS account here): a real `moto_server` process
(`devstack/moto_stack.py`) holds the render bucket and a state machine shaped like the HyperFrames
stack, whose executions really run and whose fate each row's variables choose (`hfTestFate`
succeed|fail|hang, `hfTestSeconds` N). Its connection (`AIRFLOW_CONN_HYPERFRAMES_DEFAULT`) is in
the environment of every Airflow component, so the scheduler, the LocalExecutor's workers and
the triggerer all talk HTTP to it exactly as they would to AWS.

`dag.test()` runs one task at a time, ignores pools, runs triggers inline and never kills a
task or a trigger. Here the api-server, scheduler, dag-processor and triggerer run for real
(SQLite), one stack for the whole module, and the tests show: the pool capping *running*
executions across two concurrent runs, trigger `on_kill` stopping executions on mark-failed
(task and run), exactly one execution per row after a worker crash, the cost gate, and a
cleared render not rendering twice. DAGs: `tests/stack_test_dags/hf_stack_lambda.py`.

The mark-failed tests wait until the triggerer has started the render's trigger: a task marked
failed in the second or so between its deferral and the triggerer loading the trigger has no
trigger to cancel, so no `on_kill` runs, and its execution is only stopped later by
`collect_manifest` (after its settle timeout).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.airflow_stack import (
    RENDER_POOL,
    RENDER_TASK_ID,
    STACK_DAGS,
    AirflowStack,
    template_variant,
)
from devstack.moto_stack import MotoStack

pytestmark = pytest.mark.slow

DAG_ID = "hf_stack_lambda"
CRASH_DAG_ID = "hf_stack_lambda_crash"
PREPARE_TASK_ID = "render_batch.prepare_batch"
APPROVAL_TASK_ID = "render_batch.approve_cost"
#: How long the cost approval waits for an answer here (then it rejects).
APPROVAL_S = 20
COLLECT_TASK_ID = "render_batch.collect_manifest"
POOL_SLOTS = 3
#: The first trigger `on_kill` in a triggerer process pays a one-time cost: its check that the
#: task is no longer deferred is the triggerer's first Execution API call, and Airflow 3.3 builds
#: its in-process Execution API app on that first call (about 8-9 s on a 2-core box).
COLD_ON_KILL_S = 20.0
WARM_ON_KILL_S = 5.0
_on_kill_seen: list[float] = []


def _stop_limit() -> float:
    return WARM_ON_KILL_S if _on_kill_seen else COLD_ON_KILL_S


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoStack]:
    """This module's own moto server, calls counted (the session one is shared with others)."""
    with MotoStack(count_calls=True) as server:
        yield server


@pytest.fixture(scope="module")
def stack(moto: MotoStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("airflow-home-lambda")
    # No task is running when the module ends, so stop() need not wait long for one to report
    # (the LocalExecutor otherwise holds the scheduler until the second SIGTERM).
    env = {
        **moto.airflow_conn_env(),
        "HF_STACK_APPROVAL_S": str(APPROVAL_S),
        # The scheduler sweeps unanswered approvals past their timeout this often (default 15).
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
    }
    airflow = AirflowStack(home, STACK_DAGS, env=env, stop_timeout_s=8)
    with airflow as running:
        print(f"stack start-up: {running.startup_seconds}")
        running.create_pool(RENDER_POOL, POOL_SLOTS, include_deferred=True)
        for dag_id in (DAG_ID, CRASH_DAG_ID):
            running.wait_for_dag(dag_id)
            running.unpause(dag_id)
        yield running
        # Nothing a test started may still be rendering (a hang would run "forever").
        running_now = _executions(moto, status="RUNNING")
        for execution in running_now:
            moto.boto3_client("stepfunctions").stop_execution(
                executionArn=execution["executionArn"]
            )
        assert running_now == [], f"executions left RUNNING: {running_now}"
    print(f"stack stop: {running.stop_seconds} s")
    assert running.leftovers == [], f"processes left after stop(): {running.leftovers}"


# -- helpers -------------------------------------------------------------------------------------


def _put_batch(moto: MotoStack, key: str, rows: Sequence[dict[str, Any]]) -> str:
    body = "".join(json.dumps(r) + "\n" for r in rows)
    moto.boto3_client("s3").put_object(Bucket=moto.bucket, Key=key, Body=body.encode())
    return f"s3://{moto.bucket}/{key}"


def _manifest(moto: MotoStack, dag_id: str, run_id: str) -> dict[str, Any]:
    """The run's manifest, from where the Lambda backend writes it by default."""
    from hyperframes_airflow.backends.base import manifest_name

    key = f"manifests/{manifest_name(dag_id, run_id, 'render_batch')}"
    body = moto.boto3_client("s3").get_object(Bucket=moto.bucket, Key=key)["Body"].read()
    data: dict[str, Any] = json.loads(body)
    return data


def _rows_by_output(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["outputKey"]: r for r in manifest["rows"]}


def _executions(moto: MotoStack, status: str | None = None) -> list[dict[str, Any]]:
    """ListExecutions of the render state machine (every page)."""
    sfn = moto.boto3_client("stepfunctions")
    kwargs: dict[str, Any] = {"stateMachineArn": moto.state_machine_arn}
    if status:
        kwargs["statusFilter"] = status
    found: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(**kwargs):
        found.extend(page["executions"])
    return found


def _executions_for(moto: MotoStack, output_prefix: str) -> list[dict[str, Any]]:
    """DescribeExecution of every execution whose input writes under `output_prefix`."""
    sfn = moto.boto3_client("stepfunctions")
    wanted = f"s3://{moto.bucket}/{output_prefix}"
    found = []
    for execution in _executions(moto):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if json.loads(described["input"])["OutputS3Uri"].startswith(wanted):
            found.append(described)
    return found


def _statuses(moto: MotoStack, arns: Sequence[str]) -> dict[str, str]:
    sfn = moto.boto3_client("stepfunctions")
    return {arn: str(sfn.describe_execution(executionArn=arn)["status"]) for arn in arns}


def _wait_for(what: str, check: Callable[[], Any], timeout: float, poll_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll_s)


def _render_states(stack: AirflowStack, dag_id: str, run_id: str) -> dict[int, str | None]:
    return {ti.map_index: ti.state for ti in stack.task_instances(dag_id, run_id, RENDER_TASK_ID)}


def _trigger_running(stack: AirflowStack, dag_id: str, run_id: str, map_index: int) -> bool:
    """The triggerer has started this render's trigger (its log says so). A task marked failed
    before that has no trigger to cancel, so no on_kill runs (see the module docstring)."""
    log = stack.task_log(dag_id, run_id, RENDER_TASK_ID, map_index=map_index)
    return ") starting" in log


def _max_overlap(intervals: Sequence[tuple[datetime, datetime]]) -> int:
    """Most intervals open at one instant (an end sorts before a start at the same time)."""
    events = [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    peak = current = 0
    for _, delta in sorted(events):
        current += delta
        peak = max(peak, current)
    return peak


def _run_seconds(stack: AirflowStack, dag_id: str, run_id: str) -> float:
    from devstack.airflow_stack import parse_time

    run = stack.dag_run(dag_id, run_id)
    start, end = parse_time(run.get("start_date")), parse_time(run.get("end_date"))
    assert start is not None and end is not None, run
    return (end - start).total_seconds()


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_pool_caps_running_executions_across_two_runs(stack: AirflowStack, moto: MotoStack) -> None:
    """Two runs of 5 rows at once through a 3-slot include_deferred pool: never more than 3
    executions RUNNING in Step Functions, and 3 reached (the cap, not serialisation)."""
    batches = {
        tag: _put_batch(
            moto,
            f"batches/pool-{tag}.jsonl",
            [
                {
                    "outputKey": f"pool/{tag}/{i}.mp4",
                    "variables": {"name": f"R{i}", "hfTestSeconds": 6},
                }
                for i in range(5)
            ],
        )
        for tag in ("a", "b")
    }
    t0 = time.monotonic()
    runs = {tag: stack.trigger(DAG_ID, {"batch": uri}) for tag, uri in batches.items()}

    samples: list[tuple[float, frozenset[str]]] = []
    states: dict[str, str] = {}
    deadline = t0 + 240
    while time.monotonic() < deadline:
        running = frozenset(e["name"] for e in _executions(moto, status="RUNNING"))
        samples.append((time.monotonic() - t0, running))
        if len(samples) % 5 == 0:
            states = {tag: str(stack.dag_run(DAG_ID, rid)["state"]) for tag, rid in runs.items()}
            if all(s in ("success", "failed") for s in states.values()):
                break
        time.sleep(0.3)
    wall = time.monotonic() - t0
    assert states == {"a": "success", "b": "success"}, stack.log_tail("scheduler")

    manifests = {tag: _manifest(moto, DAG_ID, rid) for tag, rid in runs.items()}
    names: set[str] = set()
    for manifest in manifests.values():
        assert [r["status"] for r in manifest["rows"]] == ["succeeded"] * 5, manifest["rows"]
        names |= {r["executionName"] for r in manifest["rows"]}
    assert len(names) == 10

    counts = [len(running & names) for _, running in samples]
    # moto's own start/stop times of the 10 executions: the same cap, without sampling gaps.
    ours = [e for e in _executions(moto) if e["name"] in names]
    assert len(ours) == 10 and {e["status"] for e in ours} == {"SUCCEEDED"}
    overlap = _max_overlap([(e["startDate"], e["stopDate"]) for e in ours])
    makespans = {tag: round(_run_seconds(stack, DAG_ID, rid), 1) for tag, rid in runs.items()}
    first = next(t for t, running in samples if running & names)
    print(
        f"pool K={POOL_SLOTS}: samples={len(samples)} peak RUNNING={max(counts)} "
        f"(moto start/stop overlap {overlap}); first execution at {first:.1f} s; "
        f"run makespans {makespans} s; both done within {wall:.1f} s of triggering"
    )
    assert max(counts) <= POOL_SLOTS, counts
    assert overlap <= POOL_SLOTS
    assert max(counts) == POOL_SLOTS, counts  # the pool let 3 run at once, not fewer


@pytest.mark.timeout(180)
def test_mark_deferred_render_failed_aborts_its_execution(
    stack: AirflowStack, moto: MotoStack
) -> None:
    """Mark failed on a deferred render: the trigger's on_kill stops the execution (ABORTED
    within seconds), the others finish, the run fails and the manifest says `aborted`."""
    batch = _put_batch(
        moto,
        "batches/mark.jsonl",
        [
            {"outputKey": "mark/hang.mp4", "variables": {"hfTestFate": "hang"}},
            {"outputKey": "mark/a.mp4", "variables": {"hfTestSeconds": 2}},
            {"outputKey": "mark/b.mp4", "variables": {"hfTestSeconds": 2}},
        ],
    )
    run_id = stack.trigger(DAG_ID, {"batch": batch})
    _wait_for(
        "the hang render to defer and its trigger to run",
        lambda: (
            _render_states(stack, DAG_ID, run_id).get(0) == "deferred"
            and _trigger_running(stack, DAG_ID, run_id, 0)
        ),
        timeout=120,
    )
    # The trigger reads the row back from the batch, then starts its execution.
    hang = _wait_for("the hang row's execution", lambda: _executions_for(moto, "mark/hang.mp4"), 30)
    assert len(hang) == 1 and hang[0]["status"] == "RUNNING", hang
    arn = hang[0]["executionArn"]

    stack.patch_task_instance_state(DAG_ID, run_id, RENDER_TASK_ID, "failed", map_index=0)
    t0 = time.monotonic()
    status = _wait_for(
        "the execution to leave RUNNING",
        lambda: (s := _statuses(moto, [arn])[arn]) != "RUNNING" and s,
        timeout=30,
        poll_s=0.1,
    )
    aborted_after = time.monotonic() - t0
    limit = _stop_limit()
    _on_kill_seen.append(aborted_after)
    print(f"mark-failed -> {status} in {aborted_after:.2f} s (limit {limit:g} s)")
    assert status == "ABORTED"
    assert aborted_after < limit

    assert stack.wait_for_run(DAG_ID, run_id, timeout=120) == "failed"
    rows = _rows_by_output(_manifest(moto, DAG_ID, run_id))
    assert rows["mark/hang.mp4"]["status"] == "aborted", rows["mark/hang.mp4"]
    assert rows["mark/hang.mp4"]["executionArn"] == arn
    assert rows["mark/a.mp4"]["status"] == rows["mark/b.mp4"]["status"] == "succeeded"
    # The trigger's on_kill stopped it (not collect_manifest's clean-up, which logs its own).
    log = stack.task_log(DAG_ID, run_id, RENDER_TASK_ID, map_index=0)
    assert "Trigger cancelled by user action, invoking on_kill" in log, log[-3000:]
    collect_log = stack.task_log(DAG_ID, run_id, COLLECT_TASK_ID)
    assert "its task is failed; stopping" not in collect_log


@pytest.mark.timeout(180)
def test_mark_run_failed_aborts_every_deferred_render_and_still_writes_the_manifest(
    stack: AirflowStack, moto: MotoStack
) -> None:
    """Mark the run failed with 3 renders deferred (pool full) and 2 waiting: all 3 executions
    ABORTED, the 2 never start, and the teardown still writes the manifest."""
    keys = [f"runfail/{i}.mp4" for i in range(5)]
    batch = _put_batch(
        moto,
        "batches/runfail.jsonl",
        [{"outputKey": key, "variables": {"hfTestFate": "hang"}} for key in keys],
    )
    run_id = stack.trigger(DAG_ID, {"batch": batch})
    _wait_for(
        f"{POOL_SLOTS} renders to defer",
        lambda: (
            list(_render_states(stack, DAG_ID, run_id).values()).count("deferred") == POOL_SLOTS
        ),
        timeout=120,
    )
    deferred = [
        i for i, state in _render_states(stack, DAG_ID, run_id).items() if state == "deferred"
    ]
    _wait_for(
        "their triggers to run",
        lambda: all(_trigger_running(stack, DAG_ID, run_id, i) for i in deferred),
        timeout=30,
    )
    running = _wait_for(
        f"their {POOL_SLOTS} executions",
        lambda: (found := _executions_for(moto, "runfail/")) and len(found) >= POOL_SLOTS and found,
        timeout=30,
    )
    time.sleep(1)  # give the pool a chance to (wrongly) let a 4th one in
    states = _render_states(stack, DAG_ID, run_id)
    assert list(states.values()).count("deferred") == POOL_SLOTS, states
    running = _wait_for(  # each trigger logs "starting" before its StartExecution
        "their executions",
        lambda: (found := _executions_for(moto, "runfail/")) and len(found) >= POOL_SLOTS and found,
        timeout=30,
    )
    assert len(running) == POOL_SLOTS and {e["status"] for e in running} == {"RUNNING"}
    arns = [e["executionArn"] for e in running]

    stack.patch_dag_run_state(DAG_ID, run_id, "failed")
    t0 = time.monotonic()
    _wait_for(
        "every execution to leave RUNNING",
        lambda: "RUNNING" not in _statuses(moto, arns).values(),
        timeout=40,
        poll_s=0.1,
    )
    closed_after = time.monotonic() - t0
    limit = _stop_limit()
    _on_kill_seen.append(closed_after)
    print(
        f"run marked failed -> {POOL_SLOTS} executions closed in {closed_after:.2f} s "
        f"(limit {limit:g} s)"
    )
    assert set(_statuses(moto, arns).values()) == {"ABORTED"}
    assert closed_after < limit

    assert stack.wait_for_run(DAG_ID, run_id, timeout=120) == "failed"
    collect = stack.task_instances(DAG_ID, run_id, COLLECT_TASK_ID)
    assert [ti.state for ti in collect] == ["failed"]  # it ran, wrote, then failed the run
    rows = _rows_by_output(_manifest(moto, DAG_ID, run_id))
    aborted = {k: r for k, r in rows.items() if r["status"] == "aborted"}
    skipped = {k: r for k, r in rows.items() if r["status"] == "skipped"}
    assert len(aborted) == POOL_SLOTS and len(skipped) == 5 - POOL_SLOTS, rows
    assert {r["executionArn"] for r in aborted.values()} == set(arns)
    assert all(r.get("executionArn") is None for r in skipped.values())
    # The never-started rows really never started.
    assert len(_executions_for(moto, "runfail/")) == POOL_SLOTS
    # Each was stopped by its trigger's on_kill, not by collect_manifest's clean-up.
    for index in deferred:
        log = stack.task_log(DAG_ID, run_id, RENDER_TASK_ID, map_index=index)
        assert "Trigger cancelled by user action, invoking on_kill" in log, log[-2000:]
    assert "its task is failed; stopping" not in stack.task_log(DAG_ID, run_id, COLLECT_TASK_ID)


@pytest.mark.timeout(180)
def test_retry_after_a_crash_reattaches_instead_of_rendering_twice(
    stack: AirflowStack, moto: MotoStack
) -> None:
    """The render's trigger dies right after StartExecution, before anything is recorded; the
    task's retry finds the running execution and waits on it: one execution for the row."""
    batch = _put_batch(
        moto,
        "batches/crash.jsonl",
        [
            {"outputKey": "crash/x.mp4", "variables": {"hfTestSeconds": 12}},
            {"outputKey": "fine/ok.mp4", "variables": {"hfTestSeconds": 1}},
        ],
    )
    moto.reset_calls()
    run_id = stack.trigger(CRASH_DAG_ID, {"batch": batch})
    assert stack.wait_for_run(CRASH_DAG_ID, run_id, timeout=150) == "success"
    calls = moto.calls()

    renders = {
        ti.map_index: ti for ti in stack.task_instances(CRASH_DAG_ID, run_id, RENDER_TASK_ID)
    }
    assert renders[0].state == "success" and renders[0].try_number == 2
    assert renders[1].state == "success" and renders[1].try_number == 1
    rows = _rows_by_output(_manifest(moto, CRASH_DAG_ID, run_id))
    row = rows["crash/x.mp4"]
    assert row["status"] == "succeeded" and row["attempt"] == 1, row
    base = row["executionName"]
    same_row = [e for e in _executions(moto) if e["name"].startswith(base)]
    assert [e["name"] for e in same_row] == [base], same_row
    assert same_row[0]["status"] == "SUCCEEDED"
    # Try 2 asked to start the same name with the same input, which Step Functions answers
    # with the running execution (no second one); the other row started once.
    assert calls["states:StartExecution"] == 3, calls
    first = stack.task_log(CRASH_DAG_ID, run_id, RENDER_TASK_ID, map_index=0, try_number=1)
    assert "hfTestCrash" in first, first[-3000:]


def _awaiting_approval(stack: AirflowStack, run_id: str, timeout: float = 90) -> dict[str, Any]:
    """The run's approval request once its task waits in `awaiting_input` (REST, as the
    Required actions page reads it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = stack.task_instances(DAG_ID, run_id, APPROVAL_TASK_ID)
        task = found[0] if found else None
        if task is not None and task.state == "awaiting_input":
            _scheduler_saw_the_pause(stack, run_id, deadline)
            detail: dict[str, Any] = stack.api("GET", _hitl_path(run_id))
            return detail
        assert task is None or task.state in (None, "scheduled", "queued", "running"), task
        time.sleep(0.5)
    raise AssertionError(f"{run_id}: no approval request within {timeout:g} s")


def _scheduler_saw_the_pause(stack: AirflowStack, run_id: str, deadline: float) -> None:
    """Wait until the scheduler has processed the executor's event for the paused task.

    An answer given before that (here: within a second of the pause) races Airflow itself:
    the answer re-queues the task, the scheduler then reads the executor's "success" for the
    first try as a state changed externally and fails the task. A person never answers that
    fast; the test would, so it waits like one.
    """
    needle = f"task_id={APPROVAL_TASK_ID}, run_id={run_id}, "
    log = stack.logs_dir / "scheduler.log"
    while time.monotonic() < deadline:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        if any(needle in line and "state=awaiting_input" in line for line in lines):
            return
        time.sleep(0.5)
    raise AssertionError(f"{run_id}: the scheduler never processed the approval task's pause")


def _hitl_path(run_id: str) -> str:
    from urllib.parse import quote

    return (
        f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
        f"/taskInstances/{APPROVAL_TASK_ID}/-1/hitlDetails"
    )


@pytest.mark.timeout(300)
def test_cost_gate_waits_for_a_person_and_nothing_deploys_or_starts_unless_approved(
    stack: AirflowStack, moto: MotoStack, tmp_path: Path
) -> None:
    from hyperframes_airflow.contract.plan import load_project

    # A 3 s copy of the welcome template: a site nobody uploaded yet, so "no upload" shows.
    project = template_variant(tmp_path / "welcome-3s", duration_s=3)
    site_key = f"sites/{load_project(str(project))[1]}/project.tar.gz"
    batch = _put_batch(
        moto, "batches/gate.jsonl", [{"outputKey": "gate/a.mp4"}, {"outputKey": "gate/b.mp4"}]
    )
    conf = {"batch": batch, "project": str(project), "max_cost_usd": 0.0001}
    s3 = moto.boto3_client("s3")

    # Above the limit, a manual run waits for an answer; Reject ends it without rendering.
    moto.reset_calls()
    gated = stack.trigger(DAG_ID, conf)
    request = _awaiting_approval(stack, gated)
    assert request["subject"].startswith("Approve 2 renders, estimated $")
    assert "(max_cost_usd $0.0001)?" in request["subject"]
    assert "assumptions" in request["body"] and f"{APPROVAL_S} seconds" in request["body"]
    [prepare] = stack.task_instances(DAG_ID, gated, PREPARE_TASK_ID)
    assert prepare.state == "success"  # a blocked gate no longer fails prepare
    answer = stack.api(
        "PATCH", _hitl_path(gated), json_body={"chosen_options": ["Reject"], "params_input": {}}
    )
    assert answer["chosen_options"] == ["Reject"]
    assert stack.wait_for_run(DAG_ID, gated, timeout=120) == "failed"
    calls = moto.calls()
    manifest = _manifest(moto, DAG_ID, gated)
    total = manifest["estimate"]["totalUsd"]
    assert total > 0.0001
    log = stack.task_log(DAG_ID, gated, PREPARE_TASK_ID)
    for text in (f"${total:.4f}", "max_cost_usd $0.0001", "confirm_cost=true"):
        assert text in log, (text, log[-3000:])
    gate = [p for p in manifest["problems"] if p["field"] == "max_cost_usd"]
    assert gate and f"${total:.4f}" in gate[0]["message"] and "Rejected by" in gate[0]["message"]
    assert manifest["approval"]["decision"] == "rejected" and manifest["approval"]["by"]
    assert [r["status"] for r in manifest["rows"]] == ["skipped", "skipped"]
    assert calls["states:StartExecution"] == 0, calls
    assert calls["s3:PutObject"] == 1, calls  # the manifest, and no site
    assert s3.list_objects_v2(Bucket=moto.bucket, Prefix=site_key).get("KeyCount") == 0
    assert _executions_for(moto, "gate/") == []

    # Nobody answers: past the timeout the scheduler applies the default, Reject.
    silent = stack.trigger(DAG_ID, conf)
    _awaiting_approval(stack, silent)
    t0 = time.monotonic()
    assert stack.wait_for_run(DAG_ID, silent, timeout=120) == "failed"
    waited = time.monotonic() - t0
    timed_out = _manifest(moto, DAG_ID, silent)
    assert timed_out["approval"]["decision"] == "timed-out"
    assert [r["status"] for r in timed_out["rows"]] == ["skipped", "skipped"]
    assert _executions_for(moto, "gate/") == []

    # Approve: the batch deploys and renders.
    moto.reset_calls()
    approved = stack.trigger(DAG_ID, conf)
    _awaiting_approval(stack, approved)
    stack.api(
        "PATCH", _hitl_path(approved), json_body={"chosen_options": ["Approve"], "params_input": {}}
    )
    assert stack.wait_for_run(DAG_ID, approved, timeout=120) == "success"
    calls = moto.calls()
    assert calls["states:StartExecution"] == 2, calls
    assert s3.list_objects_v2(Bucket=moto.bucket, Prefix=site_key).get("KeyCount") == 1
    manifest = _manifest(moto, DAG_ID, approved)
    assert manifest["approval"]["decision"] == "approved"
    assert [r["status"] for r in manifest["rows"]] == ["succeeded", "succeeded"]

    # A run confirmed by argument never asks.
    moto.reset_calls()
    confirmed = stack.trigger(DAG_ID, {**conf, "confirm_cost": True})
    assert stack.wait_for_run(DAG_ID, confirmed, timeout=120) == "success"
    assert stack.task_instances(DAG_ID, confirmed, APPROVAL_TASK_ID)[0].state == "success"
    assert moto.calls()["states:StartExecution"] == 2
    print(
        f"cost gate: estimate ${total:.4f} vs max_cost_usd $0.0001; unanswered for {waited:.0f} s"
    )


@pytest.mark.timeout(200)
def test_clearing_a_succeeded_render_returns_its_result_unless_forced(
    stack: AirflowStack, moto: MotoStack
) -> None:
    """Clear a succeeded render: the same result comes back with no new execution; with
    force_rerender in the run's conf, a second execution `-a2` renders it again."""
    runs: dict[str, str] = {}
    for tag, force in (("keep", False), ("force", True)):
        batch = _put_batch(
            moto,
            f"batches/clear-{tag}.jsonl",
            [{"outputKey": f"clear/{tag}.mp4", "variables": {"hfTestSeconds": 1}}],
        )
        runs[tag] = stack.trigger(DAG_ID, {"batch": batch, "force_rerender": force})
    first: dict[str, dict[str, Any]] = {}
    for tag, run_id in runs.items():
        assert stack.wait_for_run(DAG_ID, run_id, timeout=120) == "success"
        first[tag] = _rows_by_output(_manifest(moto, DAG_ID, run_id))[f"clear/{tag}.mp4"]
        assert first[tag]["attempt"] == 1 and len(_executions_for(moto, f"clear/{tag}")) == 1

    for run_id in runs.values():
        stack.clear_task_instances(DAG_ID, run_id, [(RENDER_TASK_ID, 0)], include_downstream=True)
    for tag, run_id in runs.items():
        _wait_for(
            f"{tag}: the cleared render's second try to finish",
            lambda run_id=run_id: (  # type: ignore[misc]
                [
                    (ti.try_number, ti.state)
                    for ti in stack.task_instances(DAG_ID, run_id, RENDER_TASK_ID)
                ]
                == [(2, "success")]
            ),
            timeout=120,
        )
        assert stack.wait_for_run(DAG_ID, run_id, timeout=120) == "success"

    keep = _rows_by_output(_manifest(moto, DAG_ID, runs["keep"]))["clear/keep.mp4"]
    assert keep["status"] == "succeeded"
    assert keep["executionName"] == first["keep"]["executionName"] and keep["attempt"] == 1
    assert len(_executions_for(moto, "clear/keep")) == 1
    log = stack.task_log(DAG_ID, runs["keep"], RENDER_TASK_ID, map_index=0, try_number=2)
    assert "already rendered" in log, log[-3000:]

    forced = _rows_by_output(_manifest(moto, DAG_ID, runs["force"]))["clear/force.mp4"]
    base = first["force"]["executionName"]
    assert forced["status"] == "succeeded"
    assert forced["executionName"] == f"{base}-a2" and forced["attempt"] == 2, forced
    executions = _executions_for(moto, "clear/force")
    assert sorted(e["name"] for e in executions) == [base, f"{base}-a2"]
    assert {e["status"] for e in executions} == {"SUCCEEDED"}
