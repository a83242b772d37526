"""The batch page's document: one line per input row, live while the run goes (pure).

The batch view (`hyperframes_airflow/plugins/`) reads what the run left in Airflow (prepare's
report, spec and lanes, each render task's state and rows, the live progress a render pushes,
the approval task) and hands it here; this module decides what each row shows. Rows, not task
instances, are the unit: a lane of several rows shows each of them, the one rendering now with
its progress. Nothing here can carry a variable: the inputs hold none.

Statuses beyond the manifest's: `queued` (its task or its turn has not come), `running`,
`ended` (rendered earlier in a lane still running: its result is recorded when the lane ends),
`awaiting-approval` (the cost gate waits for a person).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from hyperframes_airflow.contract.approval import Approval
from hyperframes_airflow.contract.assemble import manifest_rows, planned_lanes, settle_report
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.rerun import RERUN_STATUSES
from hyperframes_airflow.contract.rows import BatchReport, BatchSpec, Lane, RowRef

__all__ = [
    "LIVE_STATUSES",
    "BatchInputs",
    "BatchPage",
    "LiveRender",
    "PageRow",
    "TaskView",
    "build_page",
    "console_url",
    "line_of_execution",
]

#: Page statuses of rows that have not ended yet.
LIVE_STATUSES: tuple[str, ...] = ("awaiting-approval", "queued", "running", "ended")
_WAITING_TASK = frozenset({"none", "scheduled", "queued", "up_for_retry", "up_for_reschedule"})
_RUNNING_TASK = frozenset({"running", "deferred", "restarting"})
_SETTLED_TASK = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
_NAME_LINE = re.compile(r"-l(\d+)-([0-9a-f]{8})(?:-a\d+)?$")
_SHOWN_PROBLEMS = 20
#: Rows a page document lists at most (the totals count every row): a browser table of
#: 100,000 rows every few seconds helps nobody; a status filter narrows the list.
ROWS_SHOWN = 500


@dataclass(frozen=True)
class TaskView:
    """A task instance as the page needs it."""

    state: str | None
    start_date: datetime | None = None
    end_date: datetime | None = None
    try_number: int = 0
    pool_slots: int = 1
    """Renders the task runs at once (`render_batch(renders_per_task=...)`)."""


@dataclass(frozen=True)
class LiveRender:
    """What a running render task says about the row it renders now (any field may be
    unknown): a local render's CLI percentage, a Lambda render's history."""

    line: int | None = None
    fraction: float | None = None
    frames_done: int | None = None
    frames_total: int | None = None
    cost_usd: float | None = None
    execution_arn: str | None = None


@dataclass(frozen=True)
class BatchInputs:
    """Everything one render_batch group of one run left so far.

    `lanes`, `tasks`, `results` and `live` are by map index (lanes: the task's planned rows;
    results: its manifest rows); `approval` is the approval task's answer once it has one.
    """

    group_id: str
    report: BatchReport | None
    spec: BatchSpec | None = None
    lanes: Sequence[Sequence[Mapping[str, Any]]] = ()
    tasks: Mapping[int, TaskView] = field(default_factory=dict)
    results: Mapping[int, Sequence[ManifestRow]] = field(default_factory=dict)
    live: Mapping[int, LiveRender] = field(default_factory=dict)
    prepare: TaskView | None = None
    approval_task: TaskView | None = None
    approval: Approval | None = None
    approval_request: Mapping[str, Any] | None = None
    collect: TaskView | None = None
    manifest_uri: str | None = None


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class PageRow(_Model):
    """One input line as the page shows it."""

    line: int
    output_key: str | None
    status: str
    map_index: int | None = None
    progress: float | None = None
    frames_done: int | None = None
    frames_total: int | None = None
    elapsed_s: float | None = None
    cost_usd: float | None = None
    error: str | None = None
    cause: str | None = None
    attempt: int | None = None
    execution_arn: str | None = None
    console_url: str | None = None
    has_output: bool = False
    has_thumbnail: bool = False
    started_at: str | None = None
    ended_at: str | None = None


class PageTotals(_Model):
    rows: int
    by_status: dict[str, int]
    renderable: int
    ended: int
    progress: float
    """0..1 over the rows that render (running rows count by their own progress)."""


class PageCost(_Model):
    billed: bool
    estimated_usd: float | None
    estimate_text: str | None
    actual_usd: float


class PageApproval(_Model):
    state: str
    """`awaiting` (a person must answer), `pending` (not asked yet), or the decision."""
    subject: str | None = None
    body: str | None = None
    by: str | None = None
    at: str | None = None


class PageRerun(_Model):
    """What "rerun failed rows" clears: those render tasks and collect_manifest, nothing else."""

    rows: int
    task_ids: list[str | list[str | int]]


class BatchPage(_Model):
    group_id: str
    phase: str
    backend: str | None
    source: str | None
    site_id: str | None
    manifest_uri: str | None
    approval: PageApproval | None
    cost: PageCost
    totals: PageTotals
    rows: list[PageRow]
    """The rows shown: those with the status asked for (all by default), the first `limit`."""
    rows_matching: int
    """How many rows have that status (more than `rows` when the list was cut)."""
    rerun: PageRerun | None
    problems: list[dict[str, Any]]
    problem_count: int


def console_url(execution_arn: str) -> str | None:
    """The AWS console page of a Step Functions execution (as the Amazon provider links it)."""
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[2] != "states":
        return None
    partition, region = parts[1], parts[3]
    domain = {"aws-cn": "amazonaws.cn", "aws-us-gov": "amazonaws-us-gov.com"}.get(
        partition, "aws.amazon.com"
    )
    return (
        f"https://console.{domain}/states/home?region={region}"
        f"#/v2/executions/details/{execution_arn}"
    )


def line_of_execution(execution_arn: str | None, lane: Lane) -> int | None:
    """Which row of the lane a deterministic execution name renders (`-l<line>-<digest8>`),
    or None (a name of the batch's own, or another lane's)."""
    if not execution_arn:
        return None
    found = _NAME_LINE.search(execution_arn.rsplit(":", 1)[-1])
    if found is None:
        return None
    line, digest8 = int(found.group(1)), found.group(2)
    for ref in lane.rows:
        if ref.line == line and ref.digest[:8] == digest8:
            return line
    return None


def _seconds(start: str | datetime | None, end: str | datetime | None) -> float | None:
    def parse(value: str | datetime | None) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None

    a, b = parse(start), parse(end)
    if a is None or b is None:
        return None
    return round(max((b - a).total_seconds(), 0.0), 1)


def _from_result(row: ManifestRow, map_index: int | None) -> PageRow:
    return PageRow(
        line=row.input_line,
        output_key=row.output_key,
        status=row.status,
        map_index=map_index,
        progress=1.0 if row.status == "succeeded" else None,
        frames_done=row.frames if row.status == "succeeded" else None,
        frames_total=row.frames,
        elapsed_s=_seconds(row.started_at, row.ended_at),
        cost_usd=row.cost_usd,
        error=row.error,
        cause=row.cause,
        attempt=row.attempt,
        execution_arn=row.execution_arn,
        console_url=console_url(row.execution_arn) if row.execution_arn else None,
        has_output=bool(row.output_uri) and row.status == "succeeded",
        has_thumbnail=bool(row.thumbnail_uri),
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


def _total_frames(report: BatchReport | None) -> int | None:
    per = ((report.estimate or {}).get("perRender") or {}) if report else {}
    frames = per.get("totalFrames")
    return frames if isinstance(frames, int) else None


@dataclass(frozen=True, slots=True)
class _Entry:
    """A row as the totals, cost and rerun need it; its `PageRow` is built only if listed
    (a model per row per poll cost seconds at 100,000 rows)."""

    line: int
    status: str
    map_index: int | None
    page_row: Callable[[], PageRow]
    progress: float | None = None
    cost_usd: float | None = None


def _result_entry(row: ManifestRow, map_index: int | None) -> _Entry:
    return _Entry(
        line=row.input_line,
        status=row.status,
        map_index=map_index,
        page_row=lambda: _from_result(row, map_index),
        progress=1.0 if row.status == "succeeded" else None,
        cost_usd=row.cost_usd,
    )


def _always(row: PageRow) -> Callable[[], PageRow]:
    return lambda: row


def _plain_entry(ref: RowRef, status: str, map_index: int | None) -> _Entry:
    def page_row() -> PageRow:
        return PageRow(line=ref.line, output_key=ref.output_key, status=status, map_index=map_index)

    return _Entry(line=ref.line, status=status, map_index=map_index, page_row=page_row)


def _live_rows(
    lane: Lane,
    index: int,
    task: TaskView | None,
    live: LiveRender | None,
    now: datetime,
    frames_total: int | None,
) -> list[_Entry]:
    """A lane whose task has not settled: queued, or running at one row. A task rendering
    several rows at once says only which row its console link follows: its other rows show
    as running until the task records them."""
    state = (task.state if task else None) or "none"
    if state not in _RUNNING_TASK:
        return [_plain_entry(r, "queued", index) for r in lane.rows]
    wide = task is not None and task.pool_slots > 1
    current = live.line if live is not None else None
    if current is None and live is not None and live.execution_arn:
        current = line_of_execution(live.execution_arn, lane)
    if current is None:
        current = lane.rows[0].line
    out: list[_Entry] = []
    seen = False
    for ref in lane.rows:
        if ref.line != current:
            status = "running" if wide else "queued" if seen else "ended"
            out.append(_plain_entry(ref, status, index))
            continue
        seen = True
        total = (live.frames_total if live else None) or frames_total
        fraction = live.fraction if live else None
        done = live.frames_done if live else None
        if done is None and fraction is not None and total:
            done = round(fraction * total)
        arn = live.execution_arn if live else None
        row = PageRow(
            line=ref.line,
            output_key=ref.output_key,
            status="running",
            map_index=index,
            progress=fraction,
            frames_done=done,
            frames_total=total,
            elapsed_s=_seconds(task.start_date if task else None, now)
            if len(lane.rows) == 1
            else None,
            cost_usd=live.cost_usd if live else None,
            execution_arn=arn,
            console_url=console_url(arn) if arn else None,
        )
        out.append(
            _Entry(
                line=ref.line,
                status="running",
                map_index=index,
                page_row=_always(row),
                progress=fraction,
                cost_usd=row.cost_usd,
            )
        )
    return out


def _phase(inputs: BatchInputs, report: BatchReport | None, awaiting: bool) -> str:
    if inputs.collect is not None and inputs.collect.state in ("success", "failed"):
        return "finished"
    if inputs.collect is not None and inputs.collect.state == "running":
        return "collecting"
    if inputs.prepare is None or inputs.prepare.state not in _SETTLED_TASK:
        return "preparing"
    if awaiting:
        return "awaiting-approval"
    if report is not None and not report.rendered:
        return "not-rendering"
    return "rendering"


def _approval_view(inputs: BatchInputs, report: BatchReport | None) -> PageApproval | None:
    gate = ((report.estimate or {}).get("gate") or {}) if report is not None else {}
    needed = report is not None and report.status == "needs-approval"
    if inputs.approval is not None and (needed or inputs.approval.decision != "not-needed"):
        return PageApproval(
            state=inputs.approval.decision,
            subject=inputs.approval.message,
            by=inputs.approval.by,
            at=inputs.approval.at,
        )
    if not needed:
        return None
    request = inputs.approval_request or {}
    state = inputs.approval_task.state if inputs.approval_task else None
    return PageApproval(
        state="awaiting" if state == "awaiting_input" else "pending",
        subject=request.get("subject") or gate.get("message"),
        body=request.get("body"),
    )


def build_page(
    inputs: BatchInputs,
    *,
    now: datetime,
    render_task_id: str,
    collect_task_id: str,
    status: str | None = None,
    limit: int = ROWS_SHOWN,
) -> BatchPage:
    """The page document of one render_batch group (see the module doc): totals over every
    row, and the first `limit` rows with `status` (None: any)."""
    report = settle_report(inputs.report, inputs.approval)
    lanes = planned_lanes(report, inputs.lanes)
    mapped = bool(inputs.lanes) and report is not None and report.rendered
    results: dict[int, ManifestRow] = {}
    line_index: dict[int, int] = {}
    for index, task_rows in inputs.results.items():
        for row in task_rows:
            results[row.input_line] = row
            line_index[row.input_line] = index
    states = {i: t.state or "none" for i, t in inputs.tasks.items()}
    settled = {i: s for i, s in states.items() if s in _SETTLED_TASK}
    base = manifest_rows(
        report=report,
        lanes=lanes,
        mapped=mapped,
        results=results,
        task_states=settled,
        ran=set(inputs.live) | {line_index[line] for line in results},
    )
    if mapped:  # a row's task: lane i is map index i
        line_index = {ref.line: i for i, lane in enumerate(lanes) for ref in lane.rows}
    shown: dict[int, _Entry] = {
        row.input_line: _result_entry(row, line_index.get(row.input_line)) for row in base
    }
    approval = _approval_view(inputs, report)
    awaiting = approval is not None and approval.state in ("awaiting", "pending")
    frames_total = _total_frames(report)
    for index, lane in enumerate(lanes):
        if not mapped:
            if awaiting:
                for ref in lane.rows:
                    shown[ref.line] = _plain_entry(ref, "awaiting-approval", None)
            continue
        if index in settled or all(r.line in results for r in lane.rows):
            continue
        live_rows = _live_rows(
            lane, index, inputs.tasks.get(index), inputs.live.get(index), now, frames_total
        )
        for live_row in live_rows:
            if live_row.line not in results:
                shown[live_row.line] = live_row
    rows = [shown[line] for line in sorted(shown)]
    matching = [r for r in rows if status is None or r.status == status]
    return BatchPage(
        group_id=inputs.group_id,
        phase=_phase(inputs, report, awaiting),
        backend=(inputs.spec.backend if inputs.spec else None)
        or (report.backend if report else None),
        source=report.source if report else None,
        site_id=report.site_id if report else None,
        manifest_uri=inputs.manifest_uri,
        approval=approval,
        cost=_cost(report, inputs.spec, rows),
        totals=_totals(rows),
        rows=[entry.page_row() for entry in matching[:limit]],
        rows_matching=len(matching),
        rerun=_rerun(rows, settled, inputs, render_task_id, collect_task_id),
        problems=list(report.problems[:_SHOWN_PROBLEMS]) if report else [],
        problem_count=len(report.problems) if report else 0,
    )


def _cost(report: BatchReport | None, spec: BatchSpec | None, rows: list[_Entry]) -> PageCost:
    estimate = (report.estimate or {}) if report else {}
    backend = (spec.backend if spec else None) or (report.backend if report else None)
    total = estimate.get("totalUsd")
    return PageCost(
        billed=backend == "lambda",
        estimated_usd=float(total) if isinstance(total, int | float) else None,
        estimate_text=estimate.get("displayCost")
        or (f"unknown: {estimate.get('reason')}" if estimate.get("known") is False else None),
        actual_usd=round(sum(r.cost_usd or 0.0 for r in rows), 6),
    )


def _totals(rows: list[_Entry]) -> PageTotals:
    counts = Counter(r.status for r in rows)
    renderable = [r for r in rows if r.status != "invalid"]
    ended = [r for r in renderable if r.status not in LIVE_STATUSES]
    done = len(ended) + sum(1 for r in renderable if r.status == "ended")
    done_f = done + sum((r.progress or 0.0) for r in renderable if r.status == "running")
    return PageTotals(
        rows=len(rows),
        by_status=dict(sorted(counts.items())),
        renderable=len(renderable),
        ended=len(ended),
        progress=round(done_f / len(renderable), 4) if renderable else 1.0,
    )


def _rerun(
    rows: list[_Entry],
    settled: Mapping[int, str],
    inputs: BatchInputs,
    render_task_id: str,
    collect_task_id: str,
) -> PageRerun | None:
    """Failed rows of a finished run, by the render task that holds them.

    Tasks that never ran because something upstream failed (`upstream_failed`: deploy or
    approval) are left out: clearing them alone would only fail them again.
    """
    if inputs.collect is None or inputs.collect.state not in _SETTLED_TASK:
        return None
    failed = [r for r in rows if r.status in RERUN_STATUSES and r.map_index is not None]
    ran = {i for i, state in settled.items() if state != "upstream_failed"}
    indexes = sorted({r.map_index for r in failed if r.map_index is not None} & ran)
    if not indexes:
        return None
    task_ids: list[str | list[str | int]] = [[render_task_id, i] for i in indexes]
    task_ids.append(collect_task_id)
    return PageRerun(rows=len(failed), task_ids=task_ids)
