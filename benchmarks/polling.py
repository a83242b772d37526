"""B2: Step Functions reads per render and end-to-event lag, ours vs the Amazon provider.

N renders of `seconds` each, started `stagger` seconds apart (a full pool in steady state:
renders end one after another, not all in one instant), waited on the way a triggerer waits:

- ours, estimate: our Lambda lane (`triggers/lane.py`, what `HyperframesRenderTrigger` runs)
  for a one-row lane per render, with `expected_render_seconds` = what prepare_batch's estimate
  says for the welcome template (a few seconds: the watcher must find the real end itself);
- ours, exact estimate: the same with `expected_render_seconds` = the real length;
- provider, waiter_delay=5 / 60: `StepFunctionsExecutionCompleteTrigger` per render (one
  DescribeExecution per render per delay), the render started by boto3 beforehand.

Every variant runs at the same time in its own thread, with its own event loop (one triggerer
each) and its own counting moto server, so the read counts are per variant and the lag is
measured under the same load. Reads = ListExecutions + GetExecutionHistory + DescribeExecution
served by that variant's server. Lag = the moment the waiting code returns (ours: the lane has
the row's manifest row; the real trigger then pushes it and ends the task) minus the
execution's own `stopDate`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._support import Table, fmt, machine_line, welcome_rows
from devstack.moto_stack import MotoStack

SECTION_ID = "B2"
READS = ("states:DescribeExecution", "states:ListExecutions", "states:GetExecutionHistory")
VARIANTS = (
    "ours, estimate",
    "ours, exact estimate",
    "provider waiter_delay=5",
    "provider waiter_delay=60",
)
LOG = logging.getLogger("bench-b2")


@dataclass
class VariantResult:
    name: str
    renders: int
    seconds: int
    expected_s: float | None
    reads_per_render: float
    calls_per_render: dict[str, float]
    lag_mean_s: float
    lag_p50_s: float
    lag_max_s: float
    statuses: dict[str, int]


@dataclass
class B2Result:
    started_at: str
    renders: int
    stagger_s: float
    estimate_s: float
    results: list[VariantResult]


def template_estimate_seconds() -> float:
    """What prepare_batch's estimate expects one render of the welcome template to take."""
    from hyperframes_airflow.contract.config import RenderConfig
    from hyperframes_airflow.contract.estimate import estimate_batch

    est = estimate_batch(rows=1, config=RenderConfig(width=640, height=360, fps=30), duration_s=2)
    assert est.per_render is not None
    return float(est.per_render.wall_seconds)


def run(renders: int = 50, seconds: list[int] | None = None, stagger: float = 0.4) -> B2Result:
    home = Path(tempfile.mkdtemp(prefix="hf-bench-b2-"))
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    estimate = template_estimate_seconds()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: list[VariantResult] = []
    for length in seconds or [20, 120]:
        out: dict[str, VariantResult] = {}
        errors: list[BaseException] = []

        threads = [
            threading.Thread(
                target=_collect,
                args=(out, errors, i, name, home, renders, length, stagger, estimate),
                name=name,
            )
            for i, name in enumerate(VARIANTS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        results += [out[name] for name in VARIANTS]
        print(f"[b2] {length} s: {[out[n] for n in VARIANTS]}", flush=True)
    return B2Result(started_at, renders, stagger, estimate, results)


def _collect(
    out: dict[str, VariantResult],
    errors: list[BaseException],
    index: int,
    name: str,
    *args: Any,
) -> None:
    """Thread body: one variant's result into `out`, or its exception into `errors`."""
    try:
        out[name] = _variant(index, name, *args)
    except BaseException as exc:  # reported after the join
        errors.append(exc)


def _variant(
    index: int,
    name: str,
    home: Path,
    renders: int,
    length: int,
    stagger: float,
    estimate: float,
) -> VariantResult:
    conn_id = f"hf_b2_{index}"
    with MotoStack(count_calls=True, state_machine_name=f"b2-{index}") as moto:
        os.environ.update(moto.airflow_conn_env(conn_id))
        rows = welcome_rows(
            renders, f"bench/b2-{index}-{uuid.uuid4().hex[:6]}", hfTestSeconds=length
        )
        if name.startswith("ours"):
            expected = float(length) if "exact" in name else estimate
            ended, arns, statuses = asyncio.run(_ours(moto, conn_id, home, rows, stagger, expected))
        else:
            expected = None
            delay = int(name.rsplit("=", 1)[1])
            ended, arns, statuses = asyncio.run(_provider(moto, conn_id, rows, stagger, delay))
        calls = moto.calls()
        sfn = moto.boto3_client("stepfunctions")
        lags = []
        for arn in arns:
            stop = sfn.describe_execution(executionArn=arn)["stopDate"].timestamp()
            lags.append(ended[arn] - stop)
    reads = sum(calls[a] for a in READS)
    return VariantResult(
        name=name,
        renders=renders,
        seconds=length,
        expected_s=expected,
        reads_per_render=round(reads / renders, 2),
        calls_per_render={
            a.split(":")[1]: round(calls[a] / renders, 2) for a in (*READS, "states:StartExecution")
        },
        lag_mean_s=round(statistics.fmean(lags), 2),
        lag_p50_s=round(statistics.median(lags), 2),
        lag_max_s=round(max(lags), 2),
        statuses=statuses,
    )


async def _ours(
    moto: MotoStack,
    conn_id: str,
    home: Path,
    rows: list[dict[str, Any]],
    stagger: float,
    expected: float,
) -> tuple[dict[str, float], list[str], dict[str, int]]:
    from hyperframes_airflow.contract.composition import Composition
    from hyperframes_airflow.contract.config import RenderConfig
    from hyperframes_airflow.contract.plan import plan_batch
    from hyperframes_airflow.contract.rows import BatchSpec, LambdaStack, Lane
    from hyperframes_airflow.hooks.stack import HyperframesStackHook
    from hyperframes_airflow.triggers.lane import LambdaLane, LaneOptions

    run_id = f"b2-{uuid.uuid4().hex[:8]}"
    path = home / f"{run_id}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = RenderConfig(width=640, height=360, fps=30)
    site = "0123456789abcdef"
    with path.open("rb") as handle:
        plan = plan_batch(
            handle,
            config=config,
            composition=Composition(),
            site_id=site,
            dag_id="b2",
            run_id=run_id,
            bucket=moto.bucket,
        )
    spec = BatchSpec(
        backend="lambda",
        source=str(path),
        site_id=site,
        project_uri=f"s3://{moto.bucket}/sites/{site}/project.tar.gz",
        digest_bucket=moto.bucket,
        config=config.to_wire(),
        stack=LambdaStack(
            bucket_name=moto.bucket, state_machine_arn=moto.state_machine_arn, region=moto.region
        ),
        expected_render_seconds=expected,
    )
    ended: dict[str, float] = {}
    arns: list[str] = []
    statuses: dict[str, int] = {}
    started = datetime.now(UTC)

    async def lane(i: int) -> None:
        await asyncio.sleep(i * stagger)
        runner = LambdaLane(
            HyperframesStackHook(aws_conn_id=conn_id),
            spec,
            Lane(rows=[plan.rows[i].ref()]),
            LaneOptions(
                dag_id="b2", run_id=run_id, try_started_at=started, progress_interval=300.0
            ),
            LOG,
        )
        done = await runner.run()
        now = time.time()
        for row in done:
            arn = row.execution_arn or ""
            ended[arn] = now
            arns.append(arn)
            statuses[row.status] = statuses.get(row.status, 0) + 1

    await asyncio.gather(*(lane(i) for i in range(len(rows))))
    return ended, arns, statuses


async def _provider(
    moto: MotoStack, conn_id: str, rows: list[dict[str, Any]], stagger: float, delay: int
) -> tuple[dict[str, float], list[str], dict[str, int]]:
    from airflow.providers.amazon.aws.triggers.step_function import (
        StepFunctionsExecutionCompleteTrigger,
    )

    sfn = moto.boto3_client("stepfunctions")
    ended: dict[str, float] = {}
    arns: list[str] = []
    statuses: dict[str, int] = {}

    async def one(i: int, row: dict[str, Any]) -> None:
        await asyncio.sleep(i * stagger)
        doc = {
            "ProjectS3Uri": f"s3://{moto.bucket}/sites/naive/project.tar.gz",
            "PlanOutputS3Prefix": f"s3://{moto.bucket}/renders/{uuid.uuid4().hex}/",
            "OutputS3Uri": f"s3://{moto.bucket}/{row['outputKey']}",
            "Config": {
                "fps": 30,
                "width": 640,
                "height": 360,
                "format": "mp4",
                "variables": row["variables"],
            },
            "PlanProtocol": "v2",
        }
        arn = (
            await asyncio.to_thread(
                sfn.start_execution,
                stateMachineArn=moto.state_machine_arn,
                name=f"b2-{uuid.uuid4().hex}",
                input=json.dumps(doc),
            )
        )["executionArn"]
        trigger = StepFunctionsExecutionCompleteTrigger(
            execution_arn=arn,
            waiter_delay=delay,
            waiter_max_attempts=10_000,
            aws_conn_id=conn_id,
            region_name=moto.region,
        )
        async for event in trigger.run():
            ended[arn] = time.time()
            status = str(event.payload.get("status"))
            statuses[status] = statuses.get(status, 0) + 1
            break
        arns.append(arn)

    await asyncio.gather(*(one(i, r) for i, r in enumerate(rows)))
    return ended, arns, statuses


def to_markdown(result: B2Result, *, command: str, load_note: str) -> str:
    table = Table(
        [
            "render length x renders",
            "waiting code",
            "reads / render",
            "ListExecutions / GetExecutionHistory / DescribeExecution per render",
            "end-to-event lag mean / median / max (s)",
            "outcome",
        ]
    )
    for r in result.results:
        c = r.calls_per_render
        table.add(
            f"{r.seconds} s x {r.renders}",
            r.name + (f" ({r.expected_s:g} s)" if r.expected_s is not None else ""),
            fmt(r.reads_per_render, 2),
            f"{c['ListExecutions']:.2f} / {c['GetExecutionHistory']:.2f} / "
            f"{c['DescribeExecution']:.2f}",
            f"{r.lag_mean_s:.2f} / {r.lag_p50_s:.2f} / {r.lag_max_s:.2f}",
            str(r.statuses),
        )
    return "\n".join(
        [
            f"## {SECTION_ID}: Step Functions reads per render and end-to-event lag",
            "",
            f"Measured {result.started_at} with `{command}`.",
            "",
            f"Machine: {machine_line()}. Renders are started {result.stagger_s:g} s apart "
            "(renders end one after another, as in a full pool). The four variants ran at the "
            "same time, each in its own thread and event loop (one triggerer each) against its "
            "own counting moto server, so counts are per variant and the lag is measured under "
            "one load. Ours is the Lambda lane the render trigger runs (start, watcher, history "
            "read, manifest row); the estimate prepare_batch computes for the welcome template "
            f"is {result.estimate_s:g} s, so with it the watcher finds the real end by itself "
            "(the *exact estimate* rows show a well-calibrated estimate). Nothing is asserted.",
            "",
            table.render(),
            "",
            "- Reads = ListExecutions + GetExecutionHistory + DescribeExecution served by the "
            "variant's moto server, over renders. Ours shares one `ListExecutions(RUNNING)` "
            "sweep per state machine among all waiting renders, and reads each render's history "
            "once at its end (frames, cost, errors for the manifest); the provider's trigger "
            "calls DescribeExecution once per render per `waiter_delay`.",
            "- Lag = when the waiting code returned minus the execution's `stopDate` (moto's "
            "clock, the same machine).",
            f"- {load_note}",
            "",
        ]
    )
