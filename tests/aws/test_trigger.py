"""The render trigger and its shared watcher, run in one event loop as the triggerer runs them,
against a real moto server (Step Functions calls counted at the server)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from hyperframes_airflow.backends.base import RenderJob
from hyperframes_airflow.backends.lambda_ import LambdaBackend
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.triggers.render import ROW_RESULT_KEY, HyperframesRenderTrigger
from devstack.moto_stack import MotoStack, eventually


def _closed(status: str | None) -> bool:
    return status != "RUNNING"


CONFIG = RenderConfig(width=640, height=360, fps=30).to_wire()


def _start(backend: LambdaBackend, **variables: Any) -> HyperframesRenderTrigger:
    token = uuid.uuid4().hex[:10]
    job = RenderJob(
        input_line=1,
        output_key=f"trig/{token}.mp4",
        execution_name=f"hf-trig-{token}",
        site_id="0123456789abcdef",
        config=CONFIG,
        variables=variables,
    )
    outcome = backend.ensure_started(job)
    return HyperframesRenderTrigger(
        execution_arn=outcome.execution_arn,
        state_machine_arn=backend.state_machine_arn,
        job={
            "line": 1,
            "outputKey": job.output_key,
            "outputUri": backend.output_uri(job.output_key),
            "executionName": outcome.execution_name,
            "executionArn": outcome.execution_arn,
            "attempt": outcome.attempt,
        },
        aws_conn_id="hyperframes_default",
        region_name=backend.region,
        poll_interval=0.5,
        progress_interval=0.7,
    )


async def _first_event(trigger: HyperframesRenderTrigger) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("trigger ended without an event")


@pytest.mark.timeout(60)
def test_many_waiting_renders_share_one_sweep(hf_conn: MotoStack) -> None:
    from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

    backend = LambdaBackend()
    triggers = [_start(backend, hfTestSeconds=6) for _ in range(12)]
    triggers.append(_start(backend, hfTestFate="fail"))
    hf_conn.reset_calls()

    async def wait_all() -> list[Any]:
        return await asyncio.gather(*(_first_event(t) for t in triggers))

    events = asyncio.run(wait_all())
    calls = hf_conn.calls()

    assert all(isinstance(e, TaskSuccessEvent) for e in events[:12])
    assert isinstance(events[12], TaskFailedEvent)
    rows = [e.xcoms[ROW_RESULT_KEY][0] for e in events]  # one row per task here
    assert {r["status"] for r in rows[:12]} == {"succeeded"}
    assert events[0].xcoms["return_value"] == [rows[0]]
    assert rows[12]["status"] == "failed" and rows[12]["error"] == "FONT_FETCH_FAILED"
    # One ListExecutions sweep serves all 13 renders; each render is described once when it
    # leaves RUNNING (plus at most a couple of races), never polled one by one.
    sweeps = calls["states:ListExecutions"]
    assert 2 <= sweeps <= 12
    assert calls["states:DescribeExecution"] <= 13 + 3
    assert calls["states:DescribeExecution"] + sweeps < 13 * 3


@pytest.mark.timeout(60)
def test_on_kill_stops_the_render_and_the_opt_out_keeps_it(hf_conn: MotoStack) -> None:
    backend = LambdaBackend()

    async def kill_after_start(trigger: HyperframesRenderTrigger) -> None:
        waiting = asyncio.create_task(_first_event(trigger))
        await asyncio.sleep(0.3)
        waiting.cancel()  # what the triggerer does on a user action, then it calls on_kill
        await trigger.on_kill()

    stopped = _start(backend, hfTestFate="hang")
    asyncio.run(kill_after_start(stopped))
    assert eventually(lambda: backend.status(stopped.execution_arn), _closed) == "ABORTED"
    asyncio.run(stopped.on_kill())  # idempotent: a second stop of a closed execution is fine

    kept = _start(backend, hfTestFate="hang")
    kept.stop_on_kill = False
    asyncio.run(kill_after_start(kept))
    assert backend.status(kept.execution_arn) == "RUNNING"
    backend.stop(kept.execution_arn, cause="test teardown")


@pytest.mark.timeout(60)
def test_on_kill_leaves_a_still_deferred_task_alone(
    hf_conn: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow bug #73454: on_kill can fire when a trigger is reassigned to another triggerer
    while its task is still deferred. Simulating a heartbeat lapse needs two triggerers, so the
    task-state lookup is stubbed here (the only stub): it answers "deferred"."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    backend = LambdaBackend()
    trigger = _start(backend, hfTestFate="hang")
    trigger.task_instance = SimpleNamespace(  # type: ignore[assignment]
        dag_id="d", task_id="render", run_id="r", map_index=0
    )
    monkeypatch.setattr(
        RuntimeTaskInstance,
        "get_task_states",
        staticmethod(lambda **_: {"r": {"render_0": "deferred"}}),
    )
    asyncio.run(trigger.on_kill())
    assert backend.status(trigger.execution_arn) == "RUNNING"
    monkeypatch.setattr(
        RuntimeTaskInstance,
        "get_task_states",
        staticmethod(lambda **_: {"r": {"render_0": "failed"}}),
    )
    asyncio.run(trigger.on_kill())
    assert eventually(lambda: backend.status(trigger.execution_arn), _closed) == "ABORTED"


def test_trigger_serializes_to_primitives_and_back() -> None:
    import json

    trigger = HyperframesRenderTrigger(
        execution_arn="arn:aws:states:us-east-1:1:execution:sm:n",
        state_machine_arn="arn:aws:states:us-east-1:1:stateMachine:sm",
        job={"line": 3, "outputKey": "a.mp4"},
        aws_conn_id="c",
        region_name="us-east-1",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "hyperframes_airflow.triggers.render.HyperframesRenderTrigger"
    json.dumps(kwargs)  # only primitives
    assert HyperframesRenderTrigger(**kwargs).serialize() == (classpath, kwargs)
