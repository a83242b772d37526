"""Lambda lanes and the render trigger against a real moto server (calls counted at the server).

A lane is what one render task renders: here it is planned from a real batch file with the same
planning code prepare_batch runs, then run in one event loop, as the triggerer runs it. What is
checked is what a user sees: the exact input on the wire, one execution per row whatever
restarts, the manifest rows, stops on kill and at deadlines, and how few reads the waiting costs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.moto_stack import MOCK_FILE_SIZE, MOCK_FRAMES, MotoStack, eventually
from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.plan import plan_batch
from hyperframes_airflow.contract.rows import BatchSpec, LambdaStack, Lane, RenderAttempt
from hyperframes_airflow.hooks.stack import HyperframesStackHook
from hyperframes_airflow.triggers import lane as lane_module
from hyperframes_airflow.triggers.lane import LambdaLane, LaneOptions
from hyperframes_airflow.triggers.render import HyperframesRenderTrigger

JS_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SITE = "0123456789abcdef"
LOG = logging.getLogger("test-lane")


class Planned:
    """A batch planned like prepare_batch plans it, for a lane over some of its rows."""

    def __init__(self, stack: MotoStack, tmp_path: Path, rows: list[dict[str, Any]]) -> None:
        self.stack = stack
        self.run_id = f"run-{uuid.uuid4().hex[:8]}"
        self.path = tmp_path / f"{self.run_id}.jsonl"
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        config = RenderConfig(width=640, height=360, fps=30)
        with self.path.open("rb") as handle:
            plan = plan_batch(
                handle,
                config=config,
                composition=Composition(),
                site_id=SITE,
                dag_id="lane_test",
                run_id=self.run_id,
                bucket=stack.bucket,
            )
        assert not plan.errors, plan.errors
        self.names = [r.execution_name for r in plan.rows]
        self.spec = BatchSpec(
            backend="lambda",
            source=str(self.path),
            site_id=SITE,
            project_uri=f"s3://{stack.bucket}/sites/{SITE}/project.tar.gz",
            digest_bucket=stack.bucket,
            config=config.to_wire(),
            stack=LambdaStack(
                bucket_name=stack.bucket,
                state_machine_arn=stack.state_machine_arn,
                region=stack.region,
            ),
            expected_render_seconds=1.0,
        )
        self.lane = Lane(rows=[r.ref() for r in plan.rows])

    def runner(self, *, started: datetime | None = None, **options: Any) -> LambdaLane:
        return LambdaLane(
            HyperframesStackHook(),
            self.spec,
            self.lane,
            LaneOptions(
                dag_id="lane_test",
                run_id=self.run_id,
                try_started_at=started or datetime.now(UTC),
                poll_interval=options.pop("poll_interval", 0.5),
                **options,
            ),
            LOG,
        )

    def run(self, **options: Any) -> list[ManifestRow]:
        return asyncio.run(self.runner(**options).run())

    def trigger(self, **options: Any) -> HyperframesRenderTrigger:
        return HyperframesRenderTrigger(
            lane=self.lane.dump(),
            spec=self.spec.dump(),
            render_task={
                "dag_id": "lane_test",
                "task_id": "render_batch.render",
                "run_id": self.run_id,
                "map_index": 0,
                "try_started_at": options.pop("started", datetime.now(UTC)).isoformat(),
            },
            aws_conn_id="hyperframes_default",
            poll_interval=0.5,
            progress_interval=0.7,
            **options,
        )

    def arn(self, name: str) -> str:
        return self.stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name

    def status(self, name: str) -> str | None:
        described = HyperframesStackHook().describe_execution(self.arn(name))
        return None if described is None else str(described["status"])


def _named(stack: MotoStack, prefix: str) -> list[str]:
    sfn = stack.boto3_client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=stack.state_machine_arn, maxResults=1000)
    return sorted(e["name"] for e in listed["executions"] if e["name"].startswith(prefix))


# -- the execution input --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_input_on_the_wire_is_exactly_the_node_sdks(moto: MotoStack, tmp_path: Path) -> None:
    variables = {"title": "Hi Ädä ✓", "n": 2.0, "nested": {"list": [1, 2.5]}}
    planned = Planned(
        moto,
        tmp_path,
        [{"outputKey": "wire/a.mp4", "variables": variables}, {"outputKey": "wire/b.mp4"}],
    )
    rows = planned.run()
    assert [r.status for r in rows] == ["succeeded", "succeeded"]
    bucket, name = moto.bucket, planned.names[0]
    expected = (
        f'{{"ProjectS3Uri":"s3://{bucket}/sites/{SITE}/project.tar.gz",'
        f'"PlanOutputS3Prefix":"s3://{bucket}/renders/{name}/",'
        f'"OutputS3Uri":"s3://{bucket}/wire/a.mp4",'
        '"Config":{"fps":30,"width":640,"height":360,"format":"mp4","runtimeCap":"lambda",'
        '"variables":{"title":"Hi Ädä ✓","n":2,"nested":{"list":[1,2.5]}}},'
        '"PlanProtocol":"v2"}'
    )
    sfn = moto.boto3_client("stepfunctions")
    assert sfn.describe_execution(executionArn=planned.arn(name))["input"] == expected
    # A row without variables sends no variables key, as the Node CLI does.
    second = sfn.describe_execution(executionArn=planned.arn(planned.names[1]))["input"]
    assert second.endswith('"runtimeCap":"lambda"},"PlanProtocol":"v2"}')


@pytest.mark.timeout(60)
def test_the_config_key_order_is_restored(moto: MotoStack, tmp_path: Path) -> None:
    """A JSONB XCom may reorder keys; the wire order is the CLI's whatever the spec holds."""
    planned = Planned(moto, tmp_path, [{"outputKey": "order/a.mp4"}])
    planned.spec = planned.spec.model_copy(
        update={"config": dict(reversed(list(planned.spec.config.items())))}
    )
    assert planned.run()[0].status == "succeeded"
    sent = moto.boto3_client("stepfunctions").describe_execution(
        executionArn=planned.arn(planned.names[0])
    )["input"]
    assert '"Config":{"fps":30,"width":640,"height":360,"format":"mp4"' in sent


# -- exactly one render per row ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_recreated_lane_finds_its_own_renders_and_never_starts_twice(
    moto: MotoStack, tmp_path: Path
) -> None:
    """A triggerer restart re-creates the trigger: it walks the lane again from the first row
    and must find what it already started (done or running), not start anything again."""
    rows: list[dict[str, Any]] = [
        {"outputKey": "again/a.mp4"},
        {"outputKey": "again/b.mp4", "variables": {"hfTestFate": "fail"}},
        {"outputKey": "again/c.mp4", "variables": {"hfTestFate": "hang"}},
    ]
    planned = Planned(moto, tmp_path, rows)
    started = datetime.now(UTC) - timedelta(seconds=1)

    async def first_trigger_dies_mid_lane() -> None:
        runner = planned.runner(started=started)
        task = asyncio.create_task(runner.run())
        await asyncio.to_thread(
            eventually, lambda: planned.status(planned.names[2]), lambda s: s == "RUNNING", 20
        )
        task.cancel()  # the triggerer went away: no on_kill, the render keeps running

    asyncio.run(first_trigger_dies_mid_lane())
    assert planned.status(planned.names[2]) == "RUNNING"
    moto.reset_calls()

    async def second_trigger() -> list[ManifestRow]:
        runner = planned.runner(started=started, render_timeout_s=3)
        return await runner.run()

    again = asyncio.run(second_trigger())
    assert [r.status for r in again] == ["succeeded", "failed", "timed-out"]
    assert moto.calls()["states:StartExecution"] == 3  # each answered "already exists"/same ARN
    for name in planned.names:
        assert _named(moto, name) == [name]  # one execution per row, no -a2


@pytest.mark.timeout(60)
def test_a_retry_reattaches_to_a_render_that_outlived_its_worker(
    moto: MotoStack, tmp_path: Path
) -> None:
    planned = Planned(
        moto, tmp_path, [{"outputKey": "crash/a.mp4", "variables": {"hfTestSeconds": 2}}]
    )

    async def crashed_try() -> None:
        runner = planned.runner(started=datetime.now(UTC) - timedelta(seconds=1))
        task = asyncio.create_task(runner.run())
        await asyncio.to_thread(
            eventually, lambda: planned.status(planned.names[0]), lambda s: s == "RUNNING", 20
        )
        task.cancel()

    asyncio.run(crashed_try())
    retry = planned.run(started=datetime.now(UTC))  # try 2 starts after try 1's execution
    assert retry[0].status == "succeeded" and retry[0].attempt == 1
    assert _named(moto, planned.names[0]) == [planned.names[0]]


@pytest.mark.timeout(60)
def test_a_failed_render_is_started_again_under_the_next_attempt_name(
    moto: MotoStack, tmp_path: Path
) -> None:
    planned = Planned(
        moto, tmp_path, [{"outputKey": "fail/a.mp4", "variables": {"hfTestFate": "fail"}}]
    )
    first = planned.run(started=datetime.now(UTC) - timedelta(seconds=1))
    assert first[0].status == "failed" and first[0].attempt == 1

    second = planned.run(started=datetime.now(UTC))
    base = planned.names[0]
    assert (second[0].attempt, second[0].execution_name) == (2, f"{base}-a2")
    described = moto.boto3_client("stepfunctions").describe_execution(
        executionArn=planned.arn(f"{base}-a2")
    )
    assert f"/renders/{base}-a2/" in described["input"]  # its own PlanOutputS3Prefix


@pytest.mark.timeout(60)
def test_a_succeeded_render_is_reused_unless_forced(moto: MotoStack, tmp_path: Path) -> None:
    planned = Planned(moto, tmp_path, [{"outputKey": "reuse/a.mp4"}])
    assert planned.run(started=datetime.now(UTC) - timedelta(seconds=1))[0].status == "succeeded"
    moto.reset_calls()
    reused = planned.run(started=datetime.now(UTC))
    assert (reused[0].status, reused[0].attempt) == ("succeeded", 1)
    assert moto.calls()["states:StartExecution"] == 1  # answered "already exists"

    forced = planned.run(started=datetime.now(UTC), force_rerender=True)
    assert (forced[0].status, forced[0].attempt) == ("succeeded", 2)
    base = planned.names[0]
    assert _named(moto, base) == [base, f"{base}-a2"]


@pytest.mark.timeout(60)
def test_an_execution_with_another_input_is_never_adopted(moto: MotoStack, tmp_path: Path) -> None:
    planned = Planned(
        moto, tmp_path, [{"outputKey": "other/a.mp4", "variables": {"hfTestSeconds": 1}}]
    )
    moto.boto3_client("stepfunctions").start_execution(
        stateMachineArn=moto.state_machine_arn,
        name=planned.names[0],
        input='{"Config":{"variables":{"hfTestFate":"hang"}}}',
    )
    rows = planned.run(started=datetime.now(UTC) - timedelta(seconds=5))
    assert rows[0].execution_name == f"{planned.names[0]}-a2" and rows[0].status == "succeeded"


# -- results ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_result_rows_say_what_happened(moto: MotoStack, tmp_path: Path) -> None:
    planned = Planned(
        moto,
        tmp_path,
        [
            {"outputKey": "res/ok.mp4", "variables": {"title": "Ada"}},
            {"outputKey": "res/boom.mp4", "variables": {"hfTestFate": "fail"}},
            {
                "outputKey": "res/s3.mp4",
                "variables": {"hfTestFate": "fail", "hfTestError": "S3_URI_NOT_ALLOWED"},
            },
        ],
    )
    ok, boom, denied = planned.run()
    assert ok.status == "succeeded"
    assert ok.output_uri == f"s3://{moto.bucket}/res/ok.mp4"
    assert (ok.bytes, ok.frames, ok.input_line, ok.attempt) == (MOCK_FILE_SIZE, MOCK_FRAMES, 1, 1)
    assert ok.execution_arn == planned.arn(ok.execution_name or "")
    assert ok.cost_usd == 0.0002  # 9 transitions x $0.000025, rounded like the SDK
    assert JS_ISO.fullmatch(ok.started_at or "") and JS_ISO.fullmatch(ok.ended_at or "")
    assert ok.error is None and "Ada" not in ok.model_dump_json()
    assert (boom.status, boom.error) == ("failed", "FONT_FETCH_FAILED")
    assert boom.cause == 'FONT_FETCH_FAILED: could not fetch font "Inter" (moto test stack)'
    assert boom.output_uri is None and boom.cost_usd is not None
    assert (denied.status, denied.error) == ("failed", "S3_URI_NOT_ALLOWED")


@pytest.mark.timeout(60)
def test_a_render_past_its_deadline_is_stopped_and_timed_out(
    moto: MotoStack, tmp_path: Path
) -> None:
    planned = Planned(
        moto, tmp_path, [{"outputKey": "late/a.mp4", "variables": {"hfTestFate": "hang"}}]
    )
    rows = planned.run(render_timeout_s=1.5)
    assert (rows[0].status, rows[0].error) == ("timed-out", "TIMEOUT")
    assert "1.5 s" in (rows[0].cause or "")
    assert planned.status(planned.names[0]) == "ABORTED"  # it does not outlive its deadline


@pytest.mark.timeout(60)
def test_a_changed_line_fails_its_row_without_rendering_someone_else(
    moto: MotoStack, tmp_path: Path
) -> None:
    planned = Planned(moto, tmp_path, [{"outputKey": "edit/a.mp4", "variables": {"title": "Ada"}}])
    planned.path.write_text(
        json.dumps({"outputKey": "edit/a.mp4", "variables": {"title": "Bob"}}) + "\n"
    )
    moto.reset_calls()
    rows = planned.run()
    assert (rows[0].status, rows[0].error) == ("failed-to-start", "ROW_CHANGED")
    assert "changed since prepare_batch" in (rows[0].cause or "")
    assert moto.calls().get("states:StartExecution", 0) == 0


# -- waiting: one sweep for everyone -----------------------------------------------------------


@pytest.mark.timeout(90)
def test_many_waiting_renders_share_one_sweep_and_cost_under_two_reads_each(
    moto: MotoStack, tmp_path: Path
) -> None:
    planned = [
        Planned(
            moto, tmp_path, [{"outputKey": f"sweep/{i}.mp4", "variables": {"hfTestSeconds": 4}}]
        )
        for i in range(12)
    ]
    failing = Planned(
        moto, tmp_path, [{"outputKey": "sweep/f.mp4", "variables": {"hfTestFate": "fail"}}]
    )
    moto.reset_calls()

    async def all_lanes() -> list[list[ManifestRow]]:
        return await asyncio.gather(*(p.runner().run() for p in [*planned, failing]))

    results = asyncio.run(all_lanes())
    calls = moto.calls()
    assert [r[0].status for r in results] == ["succeeded"] * 12 + ["failed"]
    reads = (
        calls["states:ListExecutions"]
        + calls["states:GetExecutionHistory"]
        + calls.get("states:DescribeExecution", 0)
    )
    assert calls["states:GetExecutionHistory"] == 13  # one per render, at its end
    assert reads / 13 <= 2.0, calls


# -- the trigger: ends the task, stops on kill -------------------------------------------------


class _Published:
    """Where the trigger's XCom pushes go in these tests (they run outside a triggerer, which
    is the one thing not run here: dag.test and the stack tests cover the real push)."""

    def __init__(self, trigger: HyperframesRenderTrigger) -> None:
        self.values: dict[str, Any] = {}

        async def record(key: str, value: Any) -> None:
            self.values[key] = value

        trigger._set_xcom = record  # type: ignore[method-assign]


async def _first_event(trigger: HyperframesRenderTrigger) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("trigger ended without an event")


@pytest.mark.timeout(60)
def test_the_trigger_pushes_the_rows_then_ends_the_task(
    moto: MotoStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

    monkeypatch.setattr(lane_module, "LINK_REFRESH_SECONDS", 3600.0)

    ok = Planned(moto, tmp_path, [{"outputKey": "end/a.mp4"}, {"outputKey": "end/b.mp4"}])
    trigger = ok.trigger()
    published = _Published(trigger)
    event = asyncio.run(_first_event(trigger))
    assert isinstance(event, TaskSuccessEvent) and event.xcoms is None
    rows = published.values["return_value"]
    assert [(r["inputLine"], r["status"]) for r in rows] == [(1, "succeeded"), (2, "succeeded")]
    link = published.values["_state_machine_executions_details"]
    # The second row ended within LINK_REFRESH_SECONDS of the first: the link stayed put.
    assert link["execution_arn"] == ok.arn(ok.names[0])

    bad = Planned(moto, tmp_path, [{"outputKey": "end/c.mp4", "variables": {"hfTestFate": "fail"}}])
    trigger = bad.trigger()
    published = _Published(trigger)
    assert isinstance(asyncio.run(_first_event(trigger)), TaskFailedEvent)
    assert published.values["return_value"][0]["status"] == "failed"


@pytest.mark.timeout(120)
def test_the_console_link_follows_the_lane_at_most_every_refresh(
    moto: MotoStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quick rows do not each cost a link write; a row still rendering after the refresh
    gets the link, so it points at a render that is running or has just ended."""
    refresh = 4.0
    monkeypatch.setattr(lane_module, "LINK_REFRESH_SECONDS", refresh)
    rows: list[dict[str, Any]] = [{"outputKey": f"link/{i}.mp4"} for i in range(8)]
    rows.append({"outputKey": "link/long.mp4", "variables": {"hfTestSeconds": refresh * 2}})
    planned = Planned(moto, tmp_path, rows)
    written: list[tuple[float, str]] = []

    async def record(attempt: RenderAttempt) -> None:
        written.append((time.monotonic(), attempt.execution_name or ""))

    lane = planned.runner()
    lane.on_started = record
    results = asyncio.run(lane.run())
    assert [r.status for r in results] == ["succeeded"] * len(rows)
    names = [name for _, name in written]
    assert names[0] == planned.names[0] and names[-1] == planned.names[-1]
    assert len(names) < len(rows)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(written)]
    assert all(gap >= refresh - 0.05 for gap in gaps), gaps


def _kill_after_start(trigger: HyperframesRenderTrigger, planned: Planned, name: str) -> None:
    """Run the trigger until `name` renders (earlier rows of the lane first: up to 90 s on a
    loaded machine), then kill it as the triggerer does."""

    async def scenario() -> None:
        waiting = asyncio.create_task(_first_event(trigger))
        await asyncio.to_thread(
            eventually, lambda: planned.status(name), lambda s: s == "RUNNING", 90
        )
        await asyncio.sleep(0.2)
        waiting.cancel()  # what the triggerer does on a user action, then it calls on_kill
        await trigger.on_kill()

    asyncio.run(scenario())


@pytest.mark.timeout(150)
def test_on_kill_stops_the_render_and_records_the_lane(moto: MotoStack, tmp_path: Path) -> None:
    planned = Planned(
        moto,
        tmp_path,
        [
            {"outputKey": "kill/a.mp4"},
            {"outputKey": "kill/b.mp4", "variables": {"hfTestFate": "hang"}},
            {"outputKey": "kill/c.mp4"},
        ],
    )
    trigger = planned.trigger()
    published = _Published(trigger)
    _kill_after_start(trigger, planned, planned.names[1])
    assert (
        eventually(lambda: planned.status(planned.names[1]), lambda s: s != "RUNNING") == "ABORTED"
    )
    rows = published.values["return_value"]
    assert [(r["inputLine"], r["status"]) for r in rows] == [
        (1, "succeeded"),
        (2, "aborted"),
        (3, "skipped"),
    ]
    assert planned.status(planned.names[2]) is None  # the row after the kill never started


@pytest.mark.timeout(150)
def test_the_opt_out_lets_a_killed_render_finish(moto: MotoStack, tmp_path: Path) -> None:
    planned = Planned(
        moto, tmp_path, [{"outputKey": "keep/a.mp4", "variables": {"hfTestFate": "hang"}}]
    )
    trigger = planned.trigger(stop_on_kill=False)
    _Published(trigger)
    _kill_after_start(trigger, planned, planned.names[0])
    assert planned.status(planned.names[0]) == "RUNNING"


@pytest.mark.timeout(150)
def test_on_kill_leaves_a_still_deferred_task_alone(
    moto: MotoStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow bug #73454: on_kill can fire when a trigger is reassigned to another triggerer
    while its task is still deferred. Simulating a heartbeat lapse needs two triggerers, so the
    task-state lookup is stubbed here (the only stub): it answers "deferred"."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    planned = Planned(
        moto, tmp_path, [{"outputKey": "moved/a.mp4", "variables": {"hfTestFate": "hang"}}]
    )
    trigger = planned.trigger()
    _Published(trigger)
    run_id = planned.run_id
    monkeypatch.setattr(
        RuntimeTaskInstance,
        "get_task_states",
        staticmethod(lambda **_: {run_id: {"render_batch.render_0": "deferred"}}),
    )
    _kill_after_start(trigger, planned, planned.names[0])
    assert planned.status(planned.names[0]) == "RUNNING"


@pytest.mark.timeout(90)
def test_a_wide_trigger_renders_two_rows_at_a_time_and_reports_them_in_order(
    moto: MotoStack, tmp_path: Path
) -> None:
    """`renders_at_once=2`: rows 1 and 2 render together, row 3 starts when row 1 ends; the
    task's rows come back in batch order, each rendered once."""
    rows = [{"outputKey": f"wide/{i}.mp4", "variables": {"hfTestSeconds": 2}} for i in range(4)]
    planned = Planned(moto, tmp_path, rows)
    trigger = planned.trigger(renders_at_once=2)
    published = _Published(trigger)
    asyncio.run(_first_event(trigger))
    result = published.values["return_value"]
    assert [(r["inputLine"], r["status"]) for r in result] == [
        (i + 1, "succeeded") for i in range(4)
    ]
    sfn = moto.boto3_client("stepfunctions")
    spans = []
    for name in planned.names:
        described = sfn.describe_execution(executionArn=planned.arn(name))
        assert described["status"] == "SUCCEEDED"
        spans.append((described["startDate"], described["stopDate"]))
    # Rows 1 and 2 overlap; row 3 starts after row 1 ends, row 4 after row 2.
    assert spans[1][0] < spans[0][1] and spans[0][0] < spans[1][1]
    assert spans[2][0] >= spans[0][1] and spans[3][0] >= spans[1][1]


@pytest.mark.timeout(150)
def test_on_kill_of_a_wide_trigger_stops_every_running_render(
    moto: MotoStack, tmp_path: Path
) -> None:
    planned = Planned(
        moto,
        tmp_path,
        [
            {"outputKey": "wide-kill/a.mp4", "variables": {"hfTestFate": "hang"}},
            {"outputKey": "wide-kill/b.mp4", "variables": {"hfTestFate": "hang"}},
            {"outputKey": "wide-kill/c.mp4"},
            {"outputKey": "wide-kill/d.mp4"},
        ],
    )
    trigger = planned.trigger(renders_at_once=2)
    published = _Published(trigger)
    _kill_after_start(trigger, planned, planned.names[1])
    closed = eventually(
        lambda: [planned.status(name) for name in planned.names[:2]],
        lambda statuses: "RUNNING" not in statuses,
    )
    assert closed == ["ABORTED", "ABORTED"]
    rows = published.values["return_value"]
    assert [(r["inputLine"], r["status"]) for r in rows] == [
        (1, "aborted"),
        (2, "aborted"),
        (3, "skipped"),
        (4, "skipped"),
    ]
    assert planned.status(planned.names[2]) is None and planned.status(planned.names[3]) is None


def test_the_trigger_serializes_to_primitives_and_back(tmp_path: Path) -> None:
    trigger = HyperframesRenderTrigger(
        lane={"rows": [{"line": 3, "offset": 0, "digest": "ab" * 8, "outputKey": "a.mp4"}]},
        spec={
            "backend": "lambda",
            "source": "/b.jsonl",
            "siteId": SITE,
            "projectUri": "s3://b/x",
            "digestBucket": "b",
            "config": {"fps": 30},
        },
        render_task={
            "dag_id": "d",
            "task_id": "t",
            "run_id": "r",
            "map_index": 0,
            "try_started_at": "2026-12-01T00:00:00+00:00",
        },
        aws_conn_id="c",
        region_name="us-east-1",
        botocore_config={"retries": {"max_attempts": 3}},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "hyperframes_airflow.triggers.render.HyperframesRenderTrigger"
    json.dumps(kwargs)  # only primitives
    assert HyperframesRenderTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert "variables" not in json.dumps(kwargs)


@pytest.mark.timeout(90)
def test_the_instant_stack_gives_the_same_succeeded_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmarks' one-state machine ends like the full topology's happy path."""
    with MotoStack(instant=True) as instant:
        for key, value in instant.airflow_conn_env().items():
            monkeypatch.setenv(key, value)
        rows = [{"outputKey": "fast/a.mp4"}, {"outputKey": "fast/b.mp4"}]
        results = Planned(instant, tmp_path, rows).run()
    assert [(r.status, r.output_key, r.frames) for r in results] == [
        ("succeeded", "fast/a.mp4", MOCK_FRAMES),
        ("succeeded", "fast/b.mp4", MOCK_FRAMES),
    ]
