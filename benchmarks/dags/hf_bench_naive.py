"""Benchmark DAG `hf_bench_naive` (B1 makespan): what a DAG author writes today.

A tiny `@task` reads the batch JSONL and builds one Step Functions input per row (the
HyperFrames execution-input shape, so the test state machine runs it), then
`StepFunctionStartExecutionOperator.partial(deferrable=True, waiter_delay=...,
pool=...).expand_kwargs(...)` starts and waits for each one, on the state machine
`HF_BENCH_NAIVE_STATE_MACHINE_ARN` (a second copy of the test machine, so each variant's
executions can be listed apart). Only Airflow and the Amazon provider are imported. Settings come
from the stack's environment: `HF_BENCH_NAIVE_POOL`, `HF_BENCH_WAITER_DELAY`,
`HF_BENCH_WAITER_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from airflow.providers.amazon.aws.operators.step_function import (
    StepFunctionStartExecutionOperator,
)
from airflow.sdk import DAG, ObjectStoragePath, Param, task

CONN_ID = "hyperframes_default"
NAIVE_POOL = os.environ.get("HF_BENCH_NAIVE_POOL", "bench_naive")
NAIVE_STATE_MACHINE_ARN = os.environ.get("HF_BENCH_NAIVE_STATE_MACHINE_ARN", "")
WAITER_DELAY = int(os.environ.get("HF_BENCH_WAITER_DELAY", "5"))
WAITER_MAX_ATTEMPTS = int(os.environ.get("HF_BENCH_WAITER_MAX_ATTEMPTS", "30"))


@task
def read_rows(batch: str) -> list[dict[str, Any]]:
    """What a DAG author writes: read the JSONL, build one Step Functions input per row, and a
    unique execution name (AWS would generate one, but moto 5.2.5's executing backend names an
    unnamed execution "None", so every row after the first would fail ExecutionAlreadyExists)."""
    bucket = batch.removeprefix("s3://").split("/", 1)[0]
    kwargs = []
    with ObjectStoragePath(batch, conn_id=CONN_ID).open("r") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            token = uuid.uuid4().hex
            prefix = f"s3://{bucket}/renders/{token}/"
            kwargs.append(
                {
                    "name": f"naive-{token}",
                    "state_machine_input": {
                        "ProjectS3Uri": f"s3://{bucket}/sites/naive/project.tar.gz",
                        "PlanOutputS3Prefix": prefix,
                        "OutputS3Uri": f"s3://{bucket}/{row['outputKey']}",
                        "Config": {
                            "fps": 30,
                            "width": 640,
                            "height": 360,
                            "format": "mp4",
                            "variables": row.get("variables") or {},
                        },
                        "PlanProtocol": "v2",
                    },
                }
            )
    return kwargs


with DAG(
    dag_id="hf_bench_naive",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["hyperframes", "benchmark"],
    params={"batch": Param("", type="string", description="Batch JSONL URI (s3://...)")},
    doc_md=__doc__,
):
    StepFunctionStartExecutionOperator.partial(
        task_id="render",
        state_machine_arn=NAIVE_STATE_MACHINE_ARN,
        deferrable=True,
        waiter_delay=WAITER_DELAY,
        waiter_max_attempts=WAITER_MAX_ATTEMPTS,
        pool=NAIVE_POOL,
        aws_conn_id=CONN_ID,
    ).expand_kwargs(read_rows("{{ params.batch }}"))
