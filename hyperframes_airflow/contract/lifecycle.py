"""The decisions of a render's life, pure: start or re-attach, what its end means, when to stop.

Exactly one render per row (DESIGN §4): names are deterministic, so whoever looks again (a
retried task, a re-created trigger, `collect_manifest`) finds what was already started. When a
start finds its name taken, `classify_existing` says what the execution under it is to us:

- started by this very try (its start is not older than the try): it *is* our render: wait for
  it, or take its end as the row's result (a re-created trigger must never start a row twice);
- older, same input, RUNNING: an earlier try's render that outlived a worker crash: re-attach;
- older, same input, SUCCEEDED: the row is already rendered: reuse it (unless forced);
- anything else (failed, aborted, another input): pass over it to the next attempt name.

Results come from the execution's history alone (one read: it carries the status, the output
block, every error and what the cost is computed from).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from hyperframes_airflow.contract.manifest import SFN_STATUS_TO_ROW, ManifestRow
from hyperframes_airflow.contract.progress import error_summary, js_iso, render_progress
from hyperframes_airflow.contract.rows import RenderAttempt

__all__ = [
    "MAX_ATTEMPTS",
    "TERMINAL_EVENTS",
    "Verdict",
    "classify_existing",
    "describe_from_history",
    "redact",
    "result_row",
    "same_input",
    "should_stop",
]

#: Attempt names are walked up to this many; beyond it something is badly wrong.
MAX_ATTEMPTS = 100

Verdict = Literal["ours", "reattach", "reuse", "pass-over"]

#: History event type that closes an execution -> its status.
TERMINAL_EVENTS: dict[str, str] = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionAborted": "ABORTED",
    "ExecutionTimedOut": "TIMED_OUT",
}
_TERMINAL_DETAILS = {
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionAborted": "executionAbortedEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
}


def same_input(stored: Any, ours: str) -> bool:
    """Byte-equal, or equal as JSON (a service may reformat); an unknown input never matches."""
    if not isinstance(stored, str):
        return False
    if stored == ours:
        return True
    try:
        return bool(json.loads(stored) == json.loads(ours))
    except ValueError:
        return False


def classify_existing(
    describe: Mapping[str, Any],
    *,
    input_json: str,
    try_started_at: datetime,
    force_rerender: bool,
) -> Verdict:
    """What an existing execution under one of the row's names is to this try (module doc)."""
    started = describe.get("startDate")
    mine = isinstance(started, datetime) and started >= try_started_at
    if not same_input(describe.get("input"), input_json):
        return "pass-over"
    if mine:
        return "ours"
    status = str(describe.get("status"))
    if status == "RUNNING":
        return "reattach"
    if status == "SUCCEEDED" and not force_rerender:
        return "reuse"
    return "pass-over"


def describe_from_history(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The parts of DescribeExecution that the history also tells: status, start, stop,
    output, error and cause. `status` stays RUNNING while no closing event is there."""
    described: dict[str, Any] = {"status": "RUNNING"}
    for event in events:
        kind = str(event.get("type"))
        if kind == "ExecutionStarted":
            described["startDate"] = event.get("timestamp")
        elif kind in TERMINAL_EVENTS:
            described["status"] = TERMINAL_EVENTS[kind]
            described["stopDate"] = event.get("timestamp")
            if kind == "ExecutionSucceeded":
                details = event.get("executionSucceededEventDetails") or {}
                described["output"] = details.get("output")
            else:
                details = event.get(_TERMINAL_DETAILS[kind]) or {}
                described["error"] = details.get("error")
                described["cause"] = details.get("cause")
    return described


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _output_block(described: Mapping[str, Any]) -> dict[str, Any]:
    """`output.Output` of a SUCCEEDED execution ({OutputS3Uri, FramesEncoded, FileSize})."""
    raw = described.get("output")
    try:
        doc = json.loads(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        doc = None
    out = doc.get("Output") if isinstance(doc, dict) else None
    return out if isinstance(out, dict) else {}


def result_row(
    attempt: RenderAttempt,
    events: Iterable[Mapping[str, Any]],
    *,
    memory_mb: int,
    variables: Mapping[str, Any] | None = None,
    timed_out_after_s: float | None = None,
) -> ManifestRow:
    """The manifest row of a closed execution, from its history.

    Output facts come from the `Output` block, falling back to the AssembleV2 exit; cost is
    `getRenderProgress`'s accrued cost; error/cause prefer the execution-level failure, with
    any of the row's variable values redacted. `timed_out_after_s` marks a render we stopped
    because it ran past its deadline. Raises ValueError while the execution is still open.
    """
    events = list(events)
    described = describe_from_history(events)
    sfn_status = str(described["status"])
    status = SFN_STATUS_TO_ROW.get(sfn_status)
    if status is None:
        raise ValueError(f"execution {attempt.execution_arn} has not finished ({sfn_status})")
    progress = render_progress(described, events, memory_mb=memory_mb)
    row: dict[str, Any] = {
        "inputLine": attempt.line,
        "outputKey": attempt.output_key,
        "status": status,
        "executionName": attempt.execution_name,
        "executionArn": attempt.execution_arn,
        "costUsd": progress.costs.accrued_so_far_usd,
        "startedAt": js_iso(described.get("startDate")) or attempt.started_at,
        "endedAt": progress.ended_at,
        "attempt": attempt.attempt,
    }
    if status == "succeeded":
        out = _output_block(described)
        fallback = progress.output_file
        size = _number(out.get("FileSize"))
        if size is None and fallback is not None:
            size = _number(fallback.bytes)
        frames = _number(out.get("FramesEncoded"))
        if frames is None and progress.frames_rendered:
            frames = _number(progress.frames_rendered)
        uri = out.get("OutputS3Uri") or (fallback.s3_uri if fallback else None)
        row.update(outputUri=uri, bytes=size, frames=frames)
    elif timed_out_after_s is not None:
        row.update(
            status="timed-out",
            error="TIMEOUT",
            cause=f"render did not finish within {timed_out_after_s:g} s; it was stopped",
        )
    else:
        error, cause = error_summary(progress)
        row.update(error=error or sfn_status, cause=redact(cause, variables))
    return ManifestRow.model_validate(row)


def should_stop(task_state: str | None, execution_status: str | None) -> bool:
    """A render whose task is no longer running or deferred must not outlive it."""
    return execution_status == "RUNNING" and task_state not in (
        "running",
        "deferred",
        "queued",
        "scheduled",
        "up_for_reschedule",
        "restarting",
        None,
    )


#: Values shorter than this are not redacted: "on", "5", "en" would shred every message.
_REDACT_MIN_CHARS = 4


def redact(text: str | None, variables: Mapping[str, Any] | None) -> str | None:
    """`text` with every string (and long number) value of `variables` replaced by `[redacted]`.

    Error messages from renderers may quote what they rendered; a row's variables are personal
    data and must not reach the manifest or the logs through them.
    """
    if not text or not variables:
        return text
    values: set[str] = set()
    stack: list[Any] = [variables]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            value = item if isinstance(item, str) else str(item)
            if len(value.strip()) >= _REDACT_MIN_CHARS:
                values.add(value)
    for value in sorted(values, key=len, reverse=True):
        for form in {value, json.dumps(value, ensure_ascii=False)[1:-1]}:
            if form and form in text:
                text = text.replace(form, "[redacted]")
    return text
