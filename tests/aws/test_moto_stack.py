"""The moto test stack behaves as its docstring promises: each row's input picks its fate."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from devstack.moto_stack import MOCK_CHUNKS, MOCK_FILE_SIZE, MOCK_FRAMES, MotoStack, eventually
from hyperframes_airflow.contract.progress import render_progress


def _input(stack: MotoStack, name: str, **variables: Any) -> str:
    config: dict[str, Any] = {"fps": 30, "width": 640, "height": 360, "format": "mp4"}
    if variables:
        config["variables"] = variables
    return json.dumps(
        {
            "ProjectS3Uri": f"s3://{stack.bucket}/sites/0123456789abcdef/project.tar.gz",
            "PlanOutputS3Prefix": f"s3://{stack.bucket}/renders/{name}/",
            "OutputS3Uri": f"s3://{stack.bucket}/out/{name}.mp4",
            "Config": config,
            "PlanProtocol": "v2",
        },
        separators=(",", ":"),
    )


def _run(
    stack: MotoStack, arn: str | None = None, timeout_s: float = 10.0, **variables: Any
) -> dict[str, Any]:
    sfn = stack.boto3_client("stepfunctions")
    name = f"t-{uuid.uuid4().hex[:12]}"
    execution = sfn.start_execution(
        stateMachineArn=arn or stack.state_machine_arn,
        name=name,
        input=_input(stack, name, **variables),
    )["executionArn"]
    deadline = time.monotonic() + timeout_s
    while True:
        describe: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if describe["status"] != "RUNNING" or time.monotonic() > deadline:
            return describe
        time.sleep(0.05)


def test_default_fate_succeeds_with_an_output_block(moto_stack: MotoStack) -> None:
    describe = _run(moto_stack)
    assert describe["status"] == "SUCCEEDED"
    output = json.loads(describe["output"])
    assert output["Output"] == {
        "OutputS3Uri": output["OutputS3Uri"],
        "FramesEncoded": MOCK_FRAMES,
        "FileSize": MOCK_FILE_SIZE,
    }
    assert output["Plan"]["ChunkCount"] == MOCK_CHUNKS
    assert [c["ChunkIndex"] for c in output["Chunks"]] == list(range(MOCK_CHUNKS))
    assert output["Chunks"][1]["ChunkS3Uri"].endswith("/chunks/1.mp4")


def test_happy_path_enters_the_real_states(moto_stack: MotoStack) -> None:
    describe = _run(moto_stack, title="ordinary variables do not change the fate")
    sfn = moto_stack.boto3_client("stepfunctions")
    events = sfn.get_execution_history(executionArn=describe["executionArn"])["events"]
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")
    ]
    assert entered == [
        "SelectPlanProtocol",
        "PlanV2",
        "BuildChunkList",
        "AssertChunkCount",
        "SelectWorkerProtocol",
        "RenderChunksV2",
        "RenderChunkV2",
        "RenderChunkV2",
        "AssembleV2",
    ]
    progress = render_progress(describe, events)
    assert progress.state_transitions == 7 + MOCK_CHUNKS  # contract §5.5
    assert progress.overall_progress == 1
    assert progress.lambdas_invoked == 0  # Pass states, not Lambda tasks


def test_fail_fate_fails_with_a_hyperframes_error(moto_stack: MotoStack) -> None:
    describe = _run(moto_stack, hfTestFate="fail")
    assert describe["status"] == "FAILED"
    assert describe["error"] == "FONT_FETCH_FAILED"
    assert json.loads(describe["cause"])["errorMessage"].startswith("FONT_FETCH_FAILED")

    custom = _run(moto_stack, hfTestFate="fail", hfTestError="S3_URI_NOT_ALLOWED")
    assert (custom["status"], custom["error"]) == ("FAILED", "S3_URI_NOT_ALLOWED")


def test_seconds_delay_the_success(moto_stack: MotoStack) -> None:
    t0 = time.monotonic()
    describe = _run(moto_stack, hfTestSeconds=1)
    assert describe["status"] == "SUCCEEDED"
    assert time.monotonic() - t0 >= 1.0


def test_hang_runs_until_stopped(moto_stack: MotoStack) -> None:
    describe = _run(moto_stack, timeout_s=0.5, hfTestFate="hang")
    assert describe["status"] == "RUNNING"
    sfn = moto_stack.boto3_client("stepfunctions")
    sfn.stop_execution(executionArn=describe["executionArn"], error="E", cause="C")
    stopped = eventually(
        lambda: sfn.describe_execution(executionArn=describe["executionArn"]),
        lambda d: d["status"] != "RUNNING",
    )
    assert stopped["status"] == "ABORTED"
    # moto keeps neither error nor cause of a stop (AWS does).
    assert "error" not in stopped
    events = sfn.get_execution_history(executionArn=describe["executionArn"])["events"]
    assert events[-1]["type"] == "ExecutionAborted"


def test_state_machine_timeout_gives_timed_out(moto_stack: MotoStack) -> None:
    short = moto_stack.create_state_machine(f"short-{uuid.uuid4().hex[:8]}", timeout_seconds=1)
    describe = _run(moto_stack, arn=short, hfTestFate="hang")
    assert describe["status"] == "TIMED_OUT"


def test_unsupported_plan_protocol_fails_like_the_real_stack(moto_stack: MotoStack) -> None:
    sfn = moto_stack.boto3_client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=moto_stack.state_machine_arn,
        name=f"t-{uuid.uuid4().hex[:12]}",
        input=json.dumps({"PlanProtocol": "v9", "Config": {}}),
    )["executionArn"]
    time.sleep(0.3)
    describe = sfn.describe_execution(executionArn=arn)
    assert (describe["status"], describe["error"]) == ("FAILED", "PLAN_PROTOCOL_UNSUPPORTED")


def test_idempotent_start_while_running_like_aws(moto_stack: MotoStack) -> None:
    sfn = moto_stack.boto3_client("stepfunctions")
    name = f"t-{uuid.uuid4().hex[:12]}"
    payload = _input(moto_stack, name, hfTestFate="hang")
    first = sfn.start_execution(
        stateMachineArn=moto_stack.state_machine_arn, name=name, input=payload
    )
    again = sfn.start_execution(
        stateMachineArn=moto_stack.state_machine_arn, name=name, input=payload
    )
    assert again["executionArn"] == first["executionArn"]
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(
            stateMachineArn=moto_stack.state_machine_arn, name=name, input=payload + " "
        )
    sfn.stop_execution(executionArn=first["executionArn"])


def test_calls_are_counted_by_service_and_action(moto_stack: MotoStack) -> None:
    moto_stack.reset_calls()
    s3 = moto_stack.boto3_client("s3")
    s3.put_object(Bucket=moto_stack.bucket, Key="count/me", Body=b"x")
    s3.head_object(Bucket=moto_stack.bucket, Key="count/me")
    moto_stack.boto3_client("stepfunctions").list_executions(
        stateMachineArn=moto_stack.state_machine_arn
    )
    calls = moto_stack.reset_calls()
    assert calls == {"s3:PutObject": 1, "s3:HeadObject": 1, "states:ListExecutions": 1}
    assert moto_stack.calls() == {}
