"""B2: Step Functions API calls per waiting render, ours vs the Amazon provider's trigger.

Both sides run N deferred renders the way a triggerer runs them (every trigger in one asyncio
loop) against the same real moto server, which counts every call by action. Each render is a
state machine execution that takes `seconds` (moto's `execute_state_machine`). Reported per
render: read calls while waiting (DescribeExecution + ListExecutions + GetExecutionHistory) and
the lag between the execution's end and the trigger's event.

- ours: `HyperframesRenderTrigger` (coalesced sweep per state machine, default 10 s interval,
  one history read at the end for frames and cost, progress reads within a budget);
- provider, `waiter_delay=5`: what a DAG author tunes for responsiveness;
- provider, default `waiter_delay=60`.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devstack.moto_stack import MotoStack
from hyperframes_airflow.backends.base import RenderJob
from hyperframes_airflow.backends.lambda_ import LambdaBackend
from hyperframes_airflow.contract.config import RenderConfig

SECTION_ID = "B2"
READS = ("states:DescribeExecution", "states:ListExecutions", "states:GetExecutionHistory")


@dataclass
class Variant:
    name: str
    renders: int
    seconds: float
    reads_per_render: float
    describe_per_render: float
    list_total: int
    history_per_render: float
    mean_lag_s: float
    max_lag_s: float


def _start_all(backend: LambdaBackend, n: int, seconds: float) -> list[str]:
    config = RenderConfig(width=640, height=360, fps=30).to_wire()
    arns = []
    for _ in range(n):
        token = uuid.uuid4().hex[:10]
        job = RenderJob(
            1,
            f"bench/{token}.mp4",
            f"hf-bench-{token}",
            "0" * 16,
            config,
            {"hfTestSeconds": seconds},
        )
        arns.append(backend.ensure_started(job).execution_arn)
    return arns


def _trigger(kind: str, arn: str, backend: LambdaBackend) -> Any:
    if kind == "ours":
        from hyperframes_airflow.triggers.render import HyperframesRenderTrigger

        return HyperframesRenderTrigger(
            execution_arn=arn,
            state_machine_arn=backend.state_machine_arn,
            job={
                "line": 1,
                "outputKey": "x.mp4",
                "executionName": arn.rsplit(":", 1)[1],
                "executionArn": arn,
                "attempt": 1,
            },
            aws_conn_id="hyperframes_default",
            region_name=backend.region,
        )
    from airflow.providers.amazon.aws.triggers.step_function import (
        StepFunctionsExecutionCompleteTrigger,
    )

    delay = int(kind.rsplit("=", 1)[1])
    return StepFunctionsExecutionCompleteTrigger(
        execution_arn=arn,
        waiter_delay=delay,
        waiter_max_attempts=10_000,
        aws_conn_id="hyperframes_default",
        region_name=backend.region,
    )


def _measure(stack: MotoStack, kind: str, n: int, seconds: float) -> Variant:
    backend = LambdaBackend()
    arns = _start_all(backend, n, seconds)
    stack.reset_calls()
    ended_at: dict[str, float] = {}

    async def wait(arn: str) -> None:
        trigger = _trigger(kind, arn, backend)
        async for _event in trigger.run():
            ended_at[arn] = time.time()
            break

    async def wait_all() -> None:
        await asyncio.gather(*(wait(a) for a in arns))

    asyncio.run(wait_all())
    calls = stack.calls()
    lags = []
    for arn in arns:
        stop = backend.describe(arn)["stopDate"]  # type: ignore[index]
        lags.append(max(0.0, ended_at[arn] - stop.timestamp()))
    describes = calls["states:DescribeExecution"] - 0
    return Variant(
        name=kind,
        renders=n,
        seconds=seconds,
        reads_per_render=sum(calls[a] for a in READS) / n,
        describe_per_render=describes / n,
        list_total=calls["states:ListExecutions"],
        history_per_render=calls["states:GetExecutionHistory"] / n,
        mean_lag_s=sum(lags) / n,
        max_lag_s=max(lags),
    )


def run(renders: int = 50, seconds: list[float] | None = None) -> list[Variant]:
    results = []
    with MotoStack(count_calls=True) as stack:
        os.environ.update(stack.airflow_conn_env())
        for duration in seconds or [20.0]:
            for kind in ("ours", "provider waiter_delay=5", "provider waiter_delay=60"):
                results.append(_measure(stack, kind, renders, duration))
    return results


def to_markdown(results: list[Variant], *, command: str, machine: str) -> str:
    lines = [
        "## B2: Step Functions reads per waiting render, ours vs the Amazon provider's trigger",
        "",
        f"Measured {datetime.now(UTC).isoformat(timespec='seconds')} with `{command}`.",
        "",
        f"Machine: {machine}. Every trigger of a variant runs in one asyncio loop, as in a "
        "triggerer, against one real moto server that counts calls by action (moto stands in "
        "for AWS). Reads = DescribeExecution + ListExecutions + GetExecutionHistory.",
        "",
        "| render length | trigger | reads / render | describe / render | ListExecutions (all) "
        "| history / render | x ours | end-to-event lag mean / max (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ours = next(x for x in results if x.seconds == r.seconds and x.name == "ours")
        ratio = r.reads_per_render / ours.reads_per_render if ours.reads_per_render else 0
        lines.append(
            f"| {r.seconds:g} s x {r.renders} | {r.name} | {r.reads_per_render:.2f} | "
            f"{r.describe_per_render:.2f} | {r.list_total} | {r.history_per_render:.2f} | "
            f"{ratio:.2f} | {r.mean_lag_s:.1f} / {r.max_lag_s:.1f} |"
        )
    lines += [
        "",
        "- Ours: one `ListExecutions(statusFilter=RUNNING)` sweep per state machine per "
        "interval (10 s, jittered) serves every waiting render; `DescribeExecution` only for "
        "renders that left RUNNING; one history read per render at the end (frames, cost, "
        "errors); progress reads only within a process-wide budget. The read count per render "
        "therefore stays flat as renders get longer, while a per-render poller grows with "
        "length / delay.",
        "- Quotas (big regions): DescribeExecution refills at 15/s, ListExecutions at 5/s, "
        "GetExecutionHistory at 20/s per account.",
    ]
    return "\n".join(lines)
