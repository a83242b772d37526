"""Which manifest row each input line gets, from what the run left behind (pure).

Every line of the batch gets exactly one row, in input order: the render's own result when it
left one; otherwise what the batch's report and the render task's state say really happened
(never started, upstream failure, killed before it ran...). Invalid lines are `invalid`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hyperframes_airflow.contract.approval import Approval
from hyperframes_airflow.contract.manifest import ManifestRow, RowStatus
from hyperframes_airflow.contract.rows import BatchReport, Lane, RowRef

__all__ = ["NOT_RENDERED", "gate_problem", "manifest_rows", "planned_lanes", "settle_report"]

#: A report status (batch not rendered at all) -> (row status, error) for every planned row.
NOT_RENDERED: dict[str, tuple[RowStatus, str]] = {
    "dry-run": ("would-invoke", ""),
    "invalid": ("skipped", "not rendered: the batch failed validation (strict mode)"),
    "over-budget": ("skipped", "not rendered: the estimated cost was not approved"),
    "needs-approval": ("skipped", "not rendered: the cost approval did not finish"),
    "failed": ("skipped", "not rendered: prepare_batch failed"),
}

#: A render task's state, when it left no result -> (row status, error).
_BY_TASK_STATE: dict[str | None, tuple[RowStatus, str]] = {
    "upstream_failed": ("failed-to-start", "not started: an upstream task (deploy_site) failed"),
    "skipped": ("skipped", "not started: skipped"),
    "removed": ("skipped", "not started: task removed"),
    "failed": ("failed", "its render task failed without recording a result; see its log"),
    "success": ("failed", "its render task succeeded without recording this row"),
}
#: A failed task that never ran: marking a run failed fails every task still waiting for a slot.
_NEVER_RAN: tuple[RowStatus, str] = (
    "skipped",
    "not started: its task was failed before it ran (e.g. the run was marked failed)",
)


def planned_lanes(report: BatchReport | None, lanes: Sequence[object]) -> list[Lane]:
    """The lanes of the run: each render task's rows (its `lane.<i>` XCom, by map index) when
    render tasks were mapped, else the report's rows (dry run, failed validation or cost
    gate: one pseudo-lane that no task holds)."""
    if lanes:
        return [Lane.model_validate({"rows": rows or []}) for rows in lanes]
    if report is not None and report.planned:
        return [Lane(rows=list(report.planned))]
    return []


def settle_report(report: BatchReport | None, approval: Approval | None) -> BatchReport | None:
    """The report once the approval task answered: `needs-approval` becomes `planned` (approved)
    or `over-budget` (rejected, timed out, not asked); without an answer it stays."""
    if report is None or report.status != "needs-approval" or approval is None:
        return report
    status = "planned" if approval.renders else "over-budget"
    return report.model_copy(update={"status": status})


def gate_problem(approval: Approval | None) -> dict[str, object] | None:
    """The manifest's problem for a batch the cost gate stopped: the gate's message (estimate,
    limit, how to confirm) and what the person did."""
    if approval is None or approval.renders:
        return None
    message = approval.message or "the estimated cost was not approved"
    if approval.decision == "rejected":
        message += f" Rejected by {approval.by or 'a user'}" + (
            f" at {approval.at}." if approval.at else "."
        )
    elif approval.decision == "timed-out":
        message += " Nobody answered the approval request in time, so it was rejected."
    return {"line": None, "field": "max_cost_usd", "severity": "error", "message": message}


def manifest_rows(
    *,
    report: BatchReport | None,
    lanes: Sequence[Lane],
    mapped: bool,
    results: Mapping[int, ManifestRow],
    task_states: Mapping[int, str],
    ran: set[int] | frozenset[int] = frozenset(),
) -> list[ManifestRow]:
    """One row per input line, in line order (see module doc).

    `mapped` says whether `lanes` are render tasks (lane i is map index i); `results` are
    rows by line; `ran` the map indexes known to have started (a failed task not in it was
    failed before it ever ran).
    """
    rows: dict[int, ManifestRow] = {}
    not_rendered = NOT_RENDERED.get(report.status) if report is not None and not mapped else None
    for index, lane in enumerate(lanes):
        state = task_states.get(index) if mapped else None
        for ref in lane.rows:
            result = results.get(ref.line)
            if result is not None:
                rows[ref.line] = result
                continue
            if not_rendered is not None:
                status, error = not_rendered
            elif state == "failed" and index not in ran:
                status, error = _NEVER_RAN
            else:
                status, error = _BY_TASK_STATE.get(state, ("skipped", "not started"))
            rows[ref.line] = _unrendered(ref, status, error)
    for bad in report.invalid if report is not None else []:
        rows.setdefault(
            bad.line,
            ManifestRow(
                input_line=bad.line, output_key=bad.output_key, status="invalid", error=bad.error
            ),
        )
    return [rows[line] for line in sorted(rows)]


def _unrendered(ref: RowRef, status: RowStatus, error: str) -> ManifestRow:
    return ManifestRow(
        input_line=ref.line, output_key=ref.output_key, status=status, error=error or None
    )
