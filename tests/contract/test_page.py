"""What the batch page shows for each row, from what a run left behind (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hyperframes_airflow.contract.approval import Approval
from hyperframes_airflow.contract.execution import execution_arn, execution_name
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.page import (
    BatchInputs,
    LiveRender,
    TaskView,
    build_page,
    console_url,
    line_of_execution,
)
from hyperframes_airflow.contract.rows import BatchReport, InvalidLine, Lane, RowRef

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SM = "arn:aws:states:eu-west-1:123456789012:stateMachine:hf"
DIGESTS = ["0123456789abcdef", "fedcba9876543210", "00112233445566ff", "aabbccddeeff0011"]


def _ref(line: int) -> RowRef:
    return RowRef(line=line, offset=line * 10, digest=DIGESTS[line - 1], output_key=f"v/{line}.mp4")


def _lanes(*lanes: list[int]) -> list[list[dict[str, Any]]]:
    return [[_ref(n).model_dump(by_alias=True) for n in lane] for lane in lanes]


def _report(**changes: Any) -> BatchReport:
    estimate = {
        "rows": 4,
        "totalUsd": 0.04,
        "displayCost": "$0.0400",
        "perRender": {"totalFrames": 60},
    }
    return BatchReport(
        status="planned", backend="lambda", source="s3://b/x.jsonl", estimate=estimate
    ).model_copy(update=changes)


def _row(line: int, status: str = "succeeded", **fields: Any) -> ManifestRow:
    return ManifestRow(input_line=line, output_key=f"v/{line}.mp4", status=status, **fields)  # type: ignore[arg-type]


def _page(inputs: BatchInputs) -> Any:
    return build_page(
        inputs, now=NOW, render_task_id="g.render", collect_task_id="g.collect_manifest"
    )


def test_rows_of_a_running_batch_show_queued_running_and_ended_with_progress_and_cost() -> None:
    started = NOW - timedelta(seconds=30)
    inputs = BatchInputs(
        group_id="g",
        report=_report(
            invalid=[InvalidLine(line=5, output_key="bad.mov", error="wrong extension")]
        ),
        prepare=TaskView("success"),
        lanes=_lanes([1], [2], [3], [4]),
        tasks={
            0: TaskView("success"),
            1: TaskView("deferred", start_date=started),
            2: TaskView("failed"),
            3: TaskView("scheduled"),
        },
        results={
            0: [
                _row(
                    1,
                    cost_usd=0.01,
                    output_uri="s3://b/v/1.mp4",
                    frames=60,
                    started_at="2026-12-01T11:58:00.000Z",
                    ended_at="2026-12-01T11:58:42.500Z",
                )
            ],
            2: [_row(3, "failed", error="FONT_FETCH_FAILED", cause="font 404", cost_usd=0.002)],
        },
        live={1: LiveRender(fraction=0.5, frames_done=30, frames_total=60, cost_usd=0.004)},
        collect=TaskView(None),
    )
    page = _page(inputs)
    by_line = {r.line: r for r in page.rows}
    assert [r.line for r in page.rows] == [1, 2, 3, 4, 5]
    assert [by_line[n].status for n in (1, 2, 3, 4, 5)] == [
        "succeeded",
        "running",
        "failed",
        "queued",
        "invalid",
    ]
    assert by_line[1].has_output and by_line[1].elapsed_s == 42.5 and by_line[1].progress == 1.0
    assert (by_line[2].frames_done, by_line[2].frames_total, by_line[2].progress) == (30, 60, 0.5)
    assert by_line[2].elapsed_s == 30.0 and by_line[2].cost_usd == 0.004
    assert by_line[3].error == "FONT_FETCH_FAILED" and not by_line[3].has_output
    assert page.totals.renderable == 4 and page.totals.ended == 2
    assert page.totals.progress == round(2.5 / 4, 4)
    assert page.cost.billed and page.cost.estimated_usd == 0.04
    assert page.cost.actual_usd == round(0.01 + 0.004 + 0.002, 6)
    assert page.phase == "rendering" and page.rerun is None  # not finished: nothing to rerun yet


def test_a_lane_shows_which_of_its_rows_renders_now() -> None:
    lane = Lane(rows=[_ref(1), _ref(2), _ref(3)])
    name = execution_name(dag_id="d", run_id="r", row_line=2, digest=DIGESTS[1])
    arn = execution_arn(SM, name)
    assert line_of_execution(arn, lane) == 2
    assert line_of_execution(execution_arn(SM, "my-own-name"), lane) is None
    inputs = BatchInputs(
        group_id="g",
        report=_report(),
        lanes=_lanes([1, 2, 3]),
        tasks={0: TaskView("deferred")},
        live={0: LiveRender(execution_arn=arn, fraction=0.25)},
    )
    statuses = [(r.line, r.status) for r in _page(inputs).rows]
    assert statuses == [(1, "ended"), (2, "running"), (3, "queued")]
    local = BatchInputs(  # a local lane reports its line itself; frames from the estimate
        group_id="g",
        report=_report(backend="local"),
        lanes=_lanes([1, 2, 3]),
        tasks={0: TaskView("running")},
        live={0: LiveRender(line=3, fraction=0.5)},
    )
    rows = _page(local).rows
    assert [r.status for r in rows] == ["ended", "ended", "running"]
    assert (rows[2].frames_done, rows[2].frames_total) == (30, 60)


def test_a_task_rendering_rows_at_once_shows_its_unrecorded_rows_running() -> None:
    """A wide task (2 pool slots) links one of its renders; its other rows render too or wait
    their turn, which the page cannot tell apart: running, not queued or ended."""
    name = execution_name(dag_id="d", run_id="r", row_line=3, digest=DIGESTS[2])
    inputs = BatchInputs(
        group_id="g",
        report=_report(),
        lanes=_lanes([1, 2, 3, 4]),
        tasks={0: TaskView("deferred", pool_slots=2)},
        live={0: LiveRender(execution_arn=execution_arn(SM, name), fraction=0.5)},
    )
    rows = _page(inputs).rows
    assert [(r.line, r.status) for r in rows] == [(i, "running") for i in (1, 2, 3, 4)]
    assert [r.progress for r in rows] == [None, None, 0.5, None]


def test_a_page_lists_a_bounded_slice_of_rows_with_totals_over_all_of_them() -> None:
    """A 100,000-row batch cannot be a 100,000-line table polled every few seconds: the page
    lists the first `limit` rows with the status asked for; totals and cost count every row."""
    inputs = BatchInputs(
        group_id="g",
        report=_report(),
        lanes=_lanes([1], [2], [3], [4]),
        tasks={i: TaskView("success") for i in range(3)} | {3: TaskView("failed")},
        results={
            0: [_row(1, cost_usd=0.01)],
            1: [_row(2, cost_usd=0.01)],
            2: [_row(3, cost_usd=0.01)],
            3: [_row(4, "failed", error="X")],
        },
    )
    page = build_page(
        inputs, now=NOW, render_task_id="g.render", collect_task_id="g.collect", limit=2
    )
    assert [r.line for r in page.rows] == [1, 2] and page.rows_matching == 4
    assert page.totals.by_status == {"failed": 1, "succeeded": 3}
    assert page.cost.actual_usd == 0.03
    failed = build_page(
        inputs, now=NOW, render_task_id="g.render", collect_task_id="g.collect", status="failed"
    )
    assert [(r.line, r.status, r.map_index) for r in failed.rows] == [(4, "failed", 3)]
    assert failed.rows_matching == 1 and failed.totals == page.totals


def test_a_batch_waiting_for_cost_approval_says_so_and_a_rejected_one_skips_every_row() -> None:
    waiting = BatchInputs(
        group_id="g",
        report=_report(status="needs-approval"),
        lanes=_lanes([1], [2]),
        prepare=TaskView("success"),
        approval_task=TaskView("awaiting_input"),
        approval_request={"subject": "Approve 2 renders, estimated $0.04?", "body": "b"},
    )
    page = _page(waiting)
    assert page.phase == "awaiting-approval"
    assert page.approval is not None and page.approval.state == "awaiting"
    assert page.approval.subject == "Approve 2 renders, estimated $0.04?"
    assert {r.status for r in page.rows} == {"awaiting-approval"}
    rejected = BatchInputs(
        group_id="g",
        report=_report(status="needs-approval"),
        lanes=_lanes([1], [2]),
        prepare=TaskView("success"),
        approval_task=TaskView("success"),
        approval=Approval(decision="rejected", by="ada", message="over budget"),
        tasks={},
        collect=TaskView("failed"),
    )
    page = _page(rejected)
    assert page.approval is not None and (page.approval.state, page.approval.by) == (
        "rejected",
        "ada",
    )
    assert {r.status for r in page.rows} == {"skipped"} and page.phase == "finished"
    assert page.rerun is None


def test_a_finished_run_offers_to_rerun_exactly_its_failed_render_tasks() -> None:
    inputs = BatchInputs(
        group_id="g",
        report=_report(),
        lanes=_lanes([1], [2, 3], [4]),
        tasks={0: TaskView("success"), 1: TaskView("failed"), 2: TaskView("failed")},
        results={
            0: [_row(1)],
            1: [_row(2), _row(3, "timed-out")],
            2: [_row(4, "aborted")],
        },
        collect=TaskView("failed"),
    )
    page = _page(inputs)
    assert page.rerun is not None and page.rerun.rows == 2
    assert page.rerun.task_ids == [["g.render", 1], ["g.render", 2], "g.collect_manifest"]
    assert page.totals.by_status == {"aborted": 1, "succeeded": 2, "timed-out": 1}


def test_no_rerun_is_offered_for_tasks_that_never_ran_because_deploy_failed() -> None:
    inputs = BatchInputs(
        group_id="g",
        report=_report(),
        lanes=_lanes([1], [2]),
        tasks={0: TaskView("upstream_failed"), 1: TaskView("upstream_failed")},
        collect=TaskView("failed"),
    )
    page = _page(inputs)
    assert page.phase == "finished"
    assert {r.status for r in page.rows} == {"failed-to-start"}
    assert page.rerun is None  # clearing them alone would fail them again


def test_console_links_follow_the_partition() -> None:
    arn = "arn:aws:states:us-east-1:1:execution:hf:name"
    assert console_url(arn) == (
        f"https://console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/{arn}"
    )
    assert "amazonaws.cn" in str(console_url("arn:aws-cn:states:cn-north-1:1:execution:hf:n"))
    assert console_url("not-an-arn") is None
