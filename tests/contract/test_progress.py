"""`render_progress` must report what the Node SDK's `getRenderProgress` reports (contract §5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hyperframes_airflow.contract.progress import (
    LAMBDA_USD_PER_GB_SECOND,
    SFN_USD_PER_TRANSITION,
    display_cost,
    error_summary,
    js_iso,
    render_progress,
    round_usd,
)

Event = dict[str, Any]
START = datetime(2026, 5, 1, 12, 34, 56, 789999, tzinfo=UTC)
OUTPUT_URI = "s3://hf-test-bucket/renders/r099.mp4"


def entered(kind: str, name: str) -> Event:
    return {
        "type": f"{kind}StateEntered",
        "stateEnteredEventDetails": {"name": name, "input": "{}"},
    }


def exited(kind: str, name: str, output: Any = None) -> Event:
    details = {"name": name, "output": json.dumps(output if output is not None else {})}
    return {"type": f"{kind}StateExited", "stateExitedEventDetails": details}


def scheduled() -> Event:
    return {
        "type": "TaskScheduled",
        "taskScheduledEventDetails": {
            "resourceType": "lambda",
            "resource": "invoke",
            "region": "us-east-1",
            "parameters": "{}",
        },
    }


def succeeded(payload: dict[str, Any]) -> Event:
    output = {"ExecutedVersion": "$LATEST", "Payload": payload, "StatusCode": 200}
    return {
        "type": "TaskSucceeded",
        "taskSucceededEventDetails": {
            "resourceType": "lambda",
            "resource": "invoke",
            "output": json.dumps(output),
        },
    }


def failed(error: str, cause: str) -> Event:
    return {
        "type": "TaskFailed",
        "taskFailedEventDetails": {
            "resourceType": "lambda",
            "resource": "invoke",
            "error": error,
            "cause": cause,
        },
    }


def lambda_cause(error_type: str, message: str) -> str:
    return json.dumps({"errorType": error_type, "errorMessage": message, "trace": ["at x"]})


PLAN_PAYLOAD = {
    "Action": "plan",
    "PlanHash": "h",
    "ChunkCount": 2,
    "TotalFrames": 60,
    "Fps": 30,
    "Width": 640,
    "Height": 360,
    "Format": "mp4",
    "HasAudio": False,
    "AudioS3Uri": None,
    "DurationMs": 4000,
    "PlanProtocol": "v2",
}


def chunk_payload(index: int) -> dict[str, Any]:
    return {
        "Action": "renderChunk",
        "ChunkS3Uri": f"s3://b/renders/x/chunks/{index:04d}.mp4",
        "ChunkIndex": index,
        "Sha256": "0" * 64,
        "FramesEncoded": 30,
        "CaptureMode": "screenshot",
        "DurationMs": 20000,
    }


def happy_history() -> tuple[list[Event], dict[str, int]]:
    """The §4.3 v2 happy path with two chunks; also returns indexes of interesting points."""
    ev: list[Event] = [{"type": "ExecutionStarted"}]
    marks: dict[str, int] = {}
    ev += [entered("Choice", "SelectPlanProtocol"), exited("Choice", "SelectPlanProtocol")]
    ev += [entered("Task", "PlanV2"), scheduled(), {"type": "TaskStarted"}]
    marks["before_plan"] = len(ev)
    ev += [succeeded(PLAN_PAYLOAD), exited("Task", "PlanV2")]
    marks["after_plan"] = len(ev)
    ev += [entered("Pass", "BuildChunkList"), exited("Pass", "BuildChunkList")]
    ev += [entered("Choice", "AssertChunkCount"), exited("Choice", "AssertChunkCount")]
    ev += [entered("Choice", "SelectWorkerProtocol"), exited("Choice", "SelectWorkerProtocol")]
    ev += [entered("Map", "RenderChunksV2"), {"type": "MapStateStarted"}]
    ev += [{"type": "MapIterationStarted"}, entered("Task", "RenderChunkV2"), scheduled()]
    ev += [{"type": "MapIterationStarted"}, entered("Task", "RenderChunkV2"), scheduled()]
    ev += [{"type": "TaskStarted"}, {"type": "TaskStarted"}]
    ev += [succeeded(chunk_payload(0)), exited("Task", "RenderChunkV2")]
    marks["one_chunk"] = len(ev)
    ev += [{"type": "MapIterationSucceeded"}, succeeded(chunk_payload(1))]
    ev += [exited("Task", "RenderChunkV2"), {"type": "MapIterationSucceeded"}]
    marks["all_chunks"] = len(ev)
    ev += [{"type": "MapStateSucceeded"}, exited("Map", "RenderChunksV2")]
    ev += [entered("Task", "AssembleV2"), scheduled(), {"type": "TaskStarted"}]
    ev += [
        succeeded(
            {
                "Action": "assemble",
                "OutputS3Uri": OUTPUT_URI,
                "FramesEncoded": 60,
                "FileSize": 12345,
                "DurationMs": 3000,
            }
        )
    ]
    final_state = {"Output": {"OutputS3Uri": OUTPUT_URI, "FramesEncoded": 60, "FileSize": 12345}}
    ev += [exited("Task", "AssembleV2", final_state)]
    marks["assembled"] = len(ev)
    ev += [{"type": "ExecutionSucceeded", "executionSucceededEventDetails": {"output": "{}"}}]
    return ev, marks


def running() -> dict[str, Any]:
    return {"executionArn": "arn:x", "status": "RUNNING", "startDate": START}


def test_happy_path_progress_points() -> None:
    events, marks = happy_history()
    at = {k: render_progress(running(), events[:i]) for k, i in marks.items()}
    assert at["before_plan"].overall_progress == 0 and at["before_plan"].total_frames is None
    assert at["after_plan"].overall_progress == 0.1 and at["after_plan"].total_frames == 60
    assert at["one_chunk"].frames_rendered == 30
    assert at["one_chunk"].overall_progress == 0.1 + 0.8 * 0.5
    assert at["all_chunks"].frames_rendered == 60
    assert at["all_chunks"].overall_progress == 0.1 + 0.8 * 1
    assert at["assembled"].overall_progress == 1  # assemble exit counts even while RUNNING
    assert at["before_plan"].output_file is None
    assert at["assembled"].status == "RUNNING" and at["assembled"].ended_at is None


def test_happy_path_final_snapshot() -> None:
    events, _ = happy_history()
    describe = {**running(), "status": "SUCCEEDED", "stopDate": START + timedelta(seconds=61)}
    progress = render_progress(describe, events)
    assert progress.frames_rendered == 60  # Assemble's FramesEncoded is not double-counted
    assert progress.lambdas_invoked == 4  # 1 + chunks + 1
    assert progress.state_transitions == 7 + 2
    assert progress.output_file is not None
    assert progress.output_file.s3_uri == OUTPUT_URI and progress.output_file.bytes == 12345
    assert progress.errors == [] and not progress.fatal_error_encountered
    assert error_summary(progress) == (None, None)

    lambda_usd = 10 * 47 * LAMBDA_USD_PER_GB_SECOND  # 10 GB x (4 + 20 + 20 + 3) s
    sfn_usd = 9 * SFN_USD_PER_TRANSITION
    assert progress.costs.accrued_so_far_usd == round_usd(lambda_usd + sfn_usd) == 0.0081
    assert progress.costs.breakdown.lambda_usd == 0.0078
    assert progress.costs.breakdown.step_functions_usd == 0.0002  # 0.000225 → 0.0002
    assert progress.costs.breakdown.estimated is False

    dumped = progress.model_dump(by_alias=True)
    assert json.dumps(dumped, separators=(",", ":")) == (
        '{"status":"SUCCEEDED","overallProgress":1,"framesRendered":60,"totalFrames":60,'
        '"lambdasInvoked":4,"costs":{"accruedSoFarUsd":0.0081,"displayCost":"$0.0081",'
        '"breakdown":{"lambdaUsd":0.0078,"stepFunctionsUsd":0.0002,"s3Estimate":"not-included",'
        '"estimated":false}},"outputFile":{"s3Uri":"s3://hf-test-bucket/renders/r099.mp4",'
        '"bytes":12345},"errors":[],"fatalErrorEncountered":false,'
        '"startedAt":"2026-05-01T12:34:56.789Z","endedAt":"2026-05-01T12:35:57.789Z"}'
    )


def test_memory_scales_lambda_cost() -> None:
    events, _ = happy_history()
    small = render_progress(running(), events, memory_mb=2048)
    assert small.costs.breakdown.lambda_usd == round_usd(2 * 47 * LAMBDA_USD_PER_GB_SECOND)


def test_docs_example_ten_transitions_rounds_half_up() -> None:
    names = ["S"] * 10
    progress = render_progress(running(), [entered("Choice", n) for n in names])
    assert progress.state_transitions == 10
    assert progress.costs.breakdown.step_functions_usd == 0.0003
    assert progress.costs.display_cost == "$0.0003"
    assert round_usd(0.00025) == 0.0003 and display_cost(0.00025) == "$0.0003"
    assert round_usd(0.00005) == 0.0001 and round_usd(0.000049) == 0.0


def test_missing_duration_marks_cost_estimated() -> None:
    events = [entered("Task", "PlanV2"), scheduled(), succeeded({"TotalFrames": 90})]
    progress = render_progress(running(), events)
    assert progress.costs.breakdown.estimated is True
    assert progress.total_frames == 90 and progress.overall_progress == 0.1


def test_failed_execution_with_retried_transient_error() -> None:
    events, marks = happy_history()
    events = events[: marks["before_plan"]]
    transient = lambda_cause("Error", "socket hang up")
    fatal_message = "PLAN_HASH_MISMATCH: event PlanHash=abc does not match manifest def"
    fatal = lambda_cause("PLAN_HASH_MISMATCH", fatal_message)
    events += [failed("Lambda.ServiceException", transient), scheduled()]
    events += [succeeded(PLAN_PAYLOAD), exited("Task", "PlanV2")]
    events += [entered("Map", "RenderChunksV2"), entered("Task", "RenderChunkV2"), scheduled()]
    events += [entered("Task", "RenderChunkV2"), scheduled(), succeeded(chunk_payload(1))]
    events += [failed("PLAN_HASH_MISMATCH", fatal)]
    events += [
        {
            "type": "ExecutionFailed",
            "executionFailedEventDetails": {"error": "PLAN_HASH_MISMATCH", "cause": fatal},
        }
    ]
    describe = {**running(), "status": "FAILED", "stopDate": START + timedelta(minutes=2)}
    progress = render_progress(describe, events)
    assert progress.fatal_error_encountered
    assert progress.lambdas_invoked == 4
    assert progress.overall_progress == 0.1 + 0.8 * 0.5  # keeps its last fraction
    assert [(e.state, e.error) for e in progress.errors] == [
        ("PlanV2", "Lambda.ServiceException"),
        ("RenderChunkV2", "PLAN_HASH_MISMATCH"),
        ("<execution>", "PLAN_HASH_MISMATCH"),
    ]
    assert progress.errors[0].cause == transient
    assert error_summary(progress) == ("PLAN_HASH_MISMATCH", fatal_message)


def test_succeeded_render_can_list_transient_errors() -> None:
    events, marks = happy_history()
    i = marks["before_plan"]
    events = [*events[:i], failed("Lambda.TooManyRequestsException", "Rate exceeded"), *events[i:]]
    progress = render_progress({**running(), "status": "SUCCEEDED"}, events)
    assert progress.overall_progress == 1 and len(progress.errors) == 1
    assert progress.errors[0].state == "PlanV2"


def test_aborted() -> None:
    events, marks = happy_history()
    events = [*events[: marks["one_chunk"]], {"type": "ExecutionAborted"}]
    progress = render_progress({**running(), "status": "ABORTED"}, events)
    assert progress.fatal_error_encountered
    assert [e.model_dump() for e in progress.errors] == [
        {"state": "<execution>", "error": "ABORTED", "cause": ""}
    ]
    assert progress.overall_progress == 0.5
    assert error_summary(progress) == ("ABORTED", None)

    stopped = {"error": "hyperframes-airflow", "cause": "task was killed"}
    progress = render_progress(
        {**running(), "status": "ABORTED"},
        [{"type": "ExecutionAborted", "executionAbortedEventDetails": stopped}],
    )
    assert error_summary(progress) == ("hyperframes-airflow", "task was killed")


def test_timed_out() -> None:
    events = [
        entered("Task", "PlanV2"),
        scheduled(),
        {"type": "ExecutionTimedOut", "executionTimedOutEventDetails": {"error": "States.Timeout"}},
    ]
    progress = render_progress({**running(), "status": "TIMED_OUT"}, events)
    assert progress.fatal_error_encountered
    assert progress.errors[-1].model_dump() == {
        "state": "<execution>",
        "error": "TIMEOUT",
        "cause": "",
    }
    assert progress.overall_progress == 0
    assert error_summary(progress) == ("TIMEOUT", None)


def test_fail_state_plain_cause_and_fallbacks() -> None:
    cause = "Plan returned ChunkCount=0 — non-retryable producer-side invariant violation."
    events = [
        entered("Fail", "PlanProducedZeroChunks"),
        {
            "type": "ExecutionFailed",
            "executionFailedEventDetails": {"error": "PLAN_TOO_LARGE", "cause": cause},
        },
    ]
    progress = render_progress({**running(), "status": "FAILED"}, events)
    assert error_summary(progress) == ("PLAN_TOO_LARGE", cause)
    # A fatal status without history (e.g. history not fetched) still explains itself.
    assert error_summary(render_progress({"status": "FAILED"}, [])) == ("FAILED", None)
    long = render_progress(
        {"status": "FAILED"},
        [{"type": "ExecutionFailed", "executionFailedEventDetails": {"cause": "x" * 2000}}],
    )
    error, summary_cause = error_summary(long)
    assert error == "UNKNOWN" and summary_cause is not None and len(summary_cause) <= 500


def test_raw_lambda_function_events_and_bad_json() -> None:
    events = [
        entered("Task", "RenderChunk"),
        {"type": "LambdaFunctionScheduled"},
        {
            "type": "LambdaFunctionSucceeded",
            "lambdaFunctionSucceededEventDetails": {
                "output": '{"FramesEncoded": 5, "DurationMs": 10}'
            },
        },
        {
            "type": "LambdaFunctionSucceeded",
            "lambdaFunctionSucceededEventDetails": {"output": "nope"},
        },
        {"type": "LambdaFunctionFailed", "lambdaFunctionFailedEventDetails": {}},
        {"type": "TaskScheduled", "taskScheduledEventDetails": {"resourceType": "sqs"}},
    ]
    progress = render_progress({}, events)
    assert progress.status == "RUNNING"
    assert progress.started_at == "1970-01-01T00:00:00.000Z"
    assert progress.lambdas_invoked == 1 and progress.frames_rendered == 5
    assert progress.errors[0].model_dump() == {
        "state": "RenderChunk",
        "error": "UNKNOWN",
        "cause": "",
    }
    assert progress.costs.breakdown.estimated is True  # the unparseable output counted as 0 ms


def test_js_iso() -> None:
    assert js_iso(START) == "2026-05-01T12:34:56.789Z"
    plus2 = datetime(2026, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert js_iso(plus2) == "2026-05-01T12:00:00.000Z"
    assert js_iso(datetime(2026, 5, 1)) == "2026-05-01T00:00:00.000Z"
    assert js_iso("2026-05-01T12:00:00.5+00:00") == "2026-05-01T12:00:00.500Z"
    assert js_iso(None) is None
