"""Progress, cost and errors of one render, computed from its Step Functions history.

A port of the Node SDK's `getRenderProgress` + `costAccounting.ts` (contract §5), so Airflow logs
and manifests show the same numbers as `hyperframes lambda progress`. It takes the boto3
responses (the caller does the AWS calls), which keeps it pure and testable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ASSEMBLE_STATES",
    "CHUNK_STATES",
    "DEFAULT_MEMORY_MB",
    "FATAL_STATUSES",
    "LAMBDA_USD_PER_GB_SECOND",
    "SFN_USD_PER_TRANSITION",
    "CostBreakdown",
    "OutputFile",
    "RenderCosts",
    "RenderError",
    "RenderProgress",
    "display_cost",
    "error_summary",
    "iso_now",
    "js_iso",
    "render_progress",
    "round_usd",
]

#: On-demand Lambda, us-east-1, x86_64 ("as of 2026-05" in `costAccounting.ts`).
LAMBDA_USD_PER_GB_SECOND = 0.0000166667
#: Step Functions Standard, per state transition.
SFN_USD_PER_TRANSITION = 0.000025
#: The stack's default `LambdaMemoryMb`; pass the real value when known.
DEFAULT_MEMORY_MB = 10240

#: Statuses after which nothing more happens and the render did not succeed.
FATAL_STATUSES: frozenset[str] = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
CHUNK_STATES: frozenset[str] = frozenset({"RenderChunk", "RenderChunkV2"})
ASSEMBLE_STATES: frozenset[str] = frozenset({"Assemble", "AssembleV2"})

_STATE_ENTERED = frozenset(
    {
        "TaskStateEntered",
        "MapStateEntered",
        "PassStateEntered",
        "ChoiceStateEntered",
        "SucceedStateEntered",
        "FailStateEntered",
        "WaitStateEntered",
        "ParallelStateEntered",
    }
)
_CAUSE_LIMIT = 500

RenderStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)


class CostBreakdown(_Model):
    lambda_usd: float = Field(alias="lambdaUsd")
    step_functions_usd: float = Field(alias="stepFunctionsUsd")
    s3_estimate: Literal["not-included"] = Field(default="not-included", alias="s3Estimate")
    #: True when some invocation reported no `DurationMs` and was counted as 0 ms.
    estimated: bool


class RenderCosts(_Model):
    accrued_so_far_usd: float = Field(alias="accruedSoFarUsd")
    display_cost: str = Field(alias="displayCost")
    breakdown: CostBreakdown


class OutputFile(_Model):
    s3_uri: str = Field(alias="s3Uri")
    bytes: int | float | None


class RenderError(_Model):
    state: str
    error: str
    cause: str


class RenderProgress(_Model):
    """Mirrors the SDK's `RenderProgress`; `model_dump(by_alias=True)` gives its JSON keys/order."""

    status: str
    #: int 0/1 at the ends (as JS prints them), a float in between.
    overall_progress: int | float = Field(alias="overallProgress")
    frames_rendered: int | float = Field(alias="framesRendered")
    total_frames: int | float | None = Field(alias="totalFrames")
    lambdas_invoked: int = Field(alias="lambdasInvoked")
    costs: RenderCosts
    output_file: OutputFile | None = Field(alias="outputFile")
    errors: list[RenderError]
    fatal_error_encountered: bool = Field(alias="fatalErrorEncountered")
    started_at: str = Field(alias="startedAt")
    ended_at: str | None = Field(alias="endedAt")
    #: Not in the Node shape (excluded from dumps): billable state entries seen so far.
    state_transitions: int = Field(default=0, alias="stateTransitions", exclude=True)


def round_usd(usd: float) -> float:
    """`Math.round(usd * 10000) / 10000`: JS rounds halves up, Python's `round` would not."""
    return math.floor(usd * 10_000 + 0.5) / 10_000


def display_cost(usd: float) -> str:
    """`"$" + roundUsd(x).toFixed(4)`, e.g. `"$0.0214"`."""
    return f"${round_usd(usd):.4f}"


def iso_now() -> str:
    """Now as `Date.prototype.toISOString()` writes it (milliseconds, `Z`)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def js_iso(value: datetime | str | None) -> str | None:
    """`Date.prototype.toISOString()`: UTC, milliseconds (truncated), `Z` suffix.

    Naive datetimes are taken as UTC (boto3 returns aware ones).
    """
    if value is None:
        return None
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _reject_constant(token: str) -> Any:
    raise ValueError(token)


def _parse_json(text: Any) -> Any:
    """JSON.parse or None, as the SDK's `parseJson` (empty and invalid input give None)."""
    if not text or not isinstance(text, str):
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None


def _number(value: Any) -> int | float | None:
    """The value if JS `typeof value === "number"` would hold (bools excluded), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _unwrap_payload(value: Any) -> Any:
    """Optimised `lambda:invoke` wraps the handler result as `{Payload: {...}, StatusCode}`."""
    if isinstance(value, dict) and isinstance(value.get("Payload"), dict | list):
        return value["Payload"]
    return value


def _details(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    details = event.get(key)
    return details if isinstance(details, Mapping) else {}


def _or(value: Any, default: str) -> str:
    """JS `??`: only a missing/None value takes the default; an empty string stays."""
    return default if value is None else str(value)


def render_progress(
    describe: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    *,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> RenderProgress:
    """Progress snapshot from `describe_execution` + the full `get_execution_history` events.

    Events must be in forward order (`reverseOrder=False`). Overall progress counts 10% at Plan,
    80% across chunks and 10% at Assemble; errors include retried transient failures, so a
    SUCCEEDED render can still list some.
    """
    status = str(describe.get("status") or "RUNNING")
    started_at = js_iso(describe.get("startDate")) or "1970-01-01T00:00:00.000Z"
    ended_at = js_iso(describe.get("stopDate"))

    transitions = 0
    lambdas_invoked = 0
    frames_rendered: int | float = 0
    total_frames: int | float | None = None
    billed_ms: list[int | float] = []
    assemble_complete = False
    output_file: OutputFile | None = None
    errors: list[RenderError] = []
    current_state: str | None = None

    def on_success(raw_output: Any) -> None:
        nonlocal frames_rendered, total_frames
        payload = _unwrap_payload(_parse_json(raw_output))
        obj: Mapping[str, Any] = payload if isinstance(payload, dict) else {}
        duration = _number(obj.get("DurationMs"))
        billed_ms.append(duration if duration is not None else 0)
        frames = _number(obj.get("FramesEncoded"))
        if current_state in CHUNK_STATES and frames is not None:
            frames_rendered += frames
        total = _number(obj.get("TotalFrames"))
        if total is not None:
            total_frames = total

    def add_error(state: str, details: Mapping[str, Any], default_error: str) -> None:
        errors.append(
            RenderError(
                state=state,
                error=_or(details.get("error"), default_error),
                cause=_or(details.get("cause"), ""),
            )
        )

    for event in events:
        kind = event.get("type")
        if kind in _STATE_ENTERED:
            transitions += 1
            name = _details(event, "stateEnteredEventDetails").get("name")
            current_state = name if name is not None else current_state
        elif kind == "TaskScheduled":
            if _details(event, "taskScheduledEventDetails").get("resourceType") == "lambda":
                lambdas_invoked += 1
        elif kind == "LambdaFunctionScheduled":
            lambdas_invoked += 1
        elif kind == "TaskSucceeded":
            details = _details(event, "taskSucceededEventDetails")
            if details.get("resourceType") == "lambda":
                on_success(details.get("output"))
        elif kind == "LambdaFunctionSucceeded":
            details = _details(event, "lambdaFunctionSucceededEventDetails")
            on_success(details.get("output"))
        elif kind in ("TaskStateExited", "MapStateExited"):
            details = _details(event, "stateExitedEventDetails")
            if details.get("name") in ASSEMBLE_STATES:
                assemble_complete = True
                exited = _parse_json(details.get("output"))
                out = exited.get("Output") if isinstance(exited, dict) else None
                out = out if isinstance(out, dict) else {}
                uri = out.get("OutputS3Uri")
                size = out.get("FileSize")
                if isinstance(uri, str) and uri:
                    output_file = OutputFile(s3Uri=uri, bytes=_number(size))
        elif kind == "TaskFailed":
            details = _details(event, "taskFailedEventDetails")
            if details.get("resourceType") == "lambda":
                add_error(current_state or "<unknown>", details, "UNKNOWN")
        elif kind == "LambdaFunctionFailed":
            details = _details(event, "lambdaFunctionFailedEventDetails")
            add_error(current_state or "<unknown>", details, "UNKNOWN")
        elif kind == "ExecutionFailed":
            add_error("<execution>", _details(event, "executionFailedEventDetails"), "UNKNOWN")
        elif kind == "ExecutionAborted":
            add_error("<execution>", _details(event, "executionAbortedEventDetails"), "ABORTED")
        elif kind == "ExecutionTimedOut":
            details = _details(event, "executionTimedOutEventDetails")
            errors.append(
                RenderError(
                    state="<execution>", error="TIMEOUT", cause=_or(details.get("cause"), "")
                )
            )

    lambda_usd = 0.0
    for ms in billed_ms:
        lambda_usd += (memory_mb / 1024) * (ms / 1000) * LAMBDA_USD_PER_GB_SECOND
    sfn_usd = transitions * SFN_USD_PER_TRANSITION
    accrued = round_usd(lambda_usd + sfn_usd)

    overall: int | float
    if status == "SUCCEEDED" or assemble_complete:
        overall = 1
    elif total_frames is None:
        overall = 0
    else:
        overall = 0.1 + 0.8 * min(1, frames_rendered / total_frames)

    return RenderProgress(
        status=status,
        overallProgress=overall,
        framesRendered=frames_rendered,
        totalFrames=total_frames,
        lambdasInvoked=lambdas_invoked,
        costs=RenderCosts(
            accruedSoFarUsd=accrued,
            displayCost=f"${accrued:.4f}",
            breakdown=CostBreakdown(
                lambdaUsd=round_usd(lambda_usd),
                stepFunctionsUsd=round_usd(sfn_usd),
                estimated=any(ms == 0 for ms in billed_ms),
            ),
        ),
        outputFile=output_file,
        errors=errors,
        fatalErrorEncountered=status in FATAL_STATUSES,
        startedAt=started_at,
        endedAt=ended_at,
        stateTransitions=transitions,
    )


def _readable_cause(cause: str) -> str:
    """A Node Lambda cause is `{"errorType","errorMessage","trace"}` JSON: keep the message."""
    parsed = _parse_json(cause.strip()) if cause.strip().startswith("{") else None
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        cause = parsed["errorMessage"]
    if len(cause) > _CAUSE_LIMIT:
        cause = cause[: _CAUSE_LIMIT - 1] + "…"
    return cause


def error_summary(progress: RenderProgress) -> tuple[str | None, str | None]:
    """The `(error, cause)` worth showing for a render, or `(None, None)` when there is none.

    Prefers the execution-level failure (what actually ended the run) over retried task errors,
    then the last task error. A fatal status with no history falls back to the status itself.
    """
    chosen: RenderError | None = None
    for err in progress.errors:
        if err.state == "<execution>":
            chosen = err
    if chosen is None and progress.errors:
        chosen = progress.errors[-1]
    if chosen is None:
        if progress.fatal_error_encountered:
            return progress.status, None
        return None, None
    cause = _readable_cause(chosen.cause)
    return chosen.error or progress.status, cause or None
