"""Live Lambda progress for the batch page, read from a real (moto) Step Functions server.

moto stands in for the HyperFrames stack (no AWS account here): its state machine has the
HyperFrames topology and each execution's variables choose its fate (devstack/moto_stack.py).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from devstack.moto_stack import MOCK_FRAMES, MotoStack
from hyperframes_airflow.contract.execution import build_execution_input
from hyperframes_airflow.contract.rows import BatchSpec, LambdaStack
from hyperframes_airflow.plugins.live import LambdaProgress


def _start(stack: MotoStack, variables: dict[str, Any]) -> str:
    name = f"hf-live-{uuid.uuid4().hex[:12]}"
    doc = build_execution_input(
        project_s3_uri=f"s3://{stack.bucket}/sites/s/project.tar.gz",
        bucket=stack.bucket,
        execution_name=name,
        output_key=f"live/{name}.mp4",
        config={"fps": 30, "width": 640, "height": 360, "format": "mp4", "variables": variables},
    )
    sfn = stack.boto3_client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn, name=name, input=json.dumps(doc)
    )
    return str(started["executionArn"])


def _spec(stack: MotoStack) -> BatchSpec:
    return BatchSpec(
        backend="lambda",
        source=f"s3://{stack.bucket}/b.jsonl",
        source_conn_id="hyperframes_default",
        site_id="s",
        project_uri=f"s3://{stack.bucket}/sites/s/project.tar.gz",
        digest_bucket=stack.bucket,
        config={},
        stack=LambdaStack(
            bucket_name=stack.bucket, state_machine_arn=stack.state_machine_arn, region=stack.region
        ),
    )


def test_progress_comes_from_the_history_cached_and_bounded_per_poll(hf_conn: MotoStack) -> None:
    sfn = hf_conn.boto3_client("stepfunctions")
    done = _start(hf_conn, {"title": "x"})
    hangs = [_start(hf_conn, {"hfTestFate": "hang"}) for _ in range(2)]
    deadline = time.monotonic() + 30
    while sfn.describe_execution(executionArn=done)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the test execution did not end"
        time.sleep(0.2)
    try:
        live = LambdaProgress(ttl_s=60, max_reads=2)
        spec = _spec(hf_conn)
        first = live.read(spec, {0: done, 1: hangs[0], 2: hangs[1]})
        assert live.reads == 2 and len(first) == 2  # two executions per poll, at most
        second = live.read(spec, {0: done, 1: hangs[0], 2: hangs[1]})
        assert live.reads == 3 and set(second) == {0, 1, 2}  # the third, the others cached
        ended = second[0]
        assert ended.fraction == 1.0 and ended.cost_usd is not None and ended.cost_usd > 0
        # moto's plan states carry no frame counts: unknown, not a wrong 0 (the page then
        # counts frames from the estimate and the fraction).
        assert (ended.frames_done, ended.frames_total) in ((None, None), (MOCK_FRAMES, 60))
        running = second[1]
        assert running.fraction is not None and running.fraction < 1
        assert running.execution_arn == hangs[0]
        live.read(spec, {1: hangs[0]})
        assert live.reads == 3  # within the TTL nobody asks AWS again
        assert live.read(None, {0: done}) == {}  # a batch without a stack has no progress
    finally:
        for arn in hangs:
            sfn.stop_execution(executionArn=arn)
