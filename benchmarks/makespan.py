"""B1: makespan of a Lambda batch vs the ideal, ours vs the naive mapped provider operator.

N rows, each a Step Functions execution lasting `seconds` (the moto test stack's
`hfTestSeconds`), a pool of `slots` slots created with `include_deferred`, on one real Airflow
stack (api-server, scheduler, dag-processor, triggerer; LocalExecutor, SQLite) against one moto
server that counts every call. Ideal makespan = ceil(N / slots) x seconds: the pool always full,
zero overhead. The DAGs are `benchmarks/dags/hf_bench_ours.py` and `hf_bench_naive.py`:

- ours: `render_batch(backend="lambda", pool=..., max_concurrent=N, poll_interval=...)`;
- naive: a `@task` reading the same JSONL, then
  `StepFunctionStartExecutionOperator.partial(deferrable=True, waiter_delay=5, pool=...)
  .expand_kwargs(rows)`, which is what a DAG author writes today.

Both variants run on the same stack, one after the other (each DAG first gets a small warm-up
run that is not measured). Measured per variant: trigger -> DAG run end, first execution start
-> last execution end (moto's start/stop dates), peak RUNNING executions (sampled from moto
every second, and exact from the start/stop dates), Step Functions calls per render (moto's
counts minus the sampler's own ListExecutions).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks._aws import (
    BENCH_DAGS,
    NAIVE_DAG_ID,
    NAIVE_POOL,
    NAIVE_RENDER_TASK,
    OURS_DAG_ID,
    OURS_POOL,
    OURS_RENDER_TASK,
    Execution,
    MotoWatch,
    ideal_makespan,
    machine_line,
    package_snapshot,
    peak_overlap,
    put_batch,
    sfn_calls,
    welcome_rows,
)
from devstack.airflow_stack import AirflowStack, parse_time
from devstack.moto_stack import MotoStack

SECTION_ID = "B1"


@dataclass
class VariantResult:
    name: str
    run_state: str
    executions: int
    statuses: dict[str, int]
    trigger_to_end_s: float
    trigger_to_first_start_s: float
    first_start_to_last_end_s: float
    peak_running_sampled: int
    peak_running_exact: int
    execution_s_median: float
    idle_slot_s_per_row: float
    finish_lag_s_mean: float
    ti_phases_s: dict[str, float]
    sfn_calls: dict[str, int]
    s3_calls: int
    render_tis: dict[str, int]
    task_s: dict[str, float] = field(default_factory=dict)


@dataclass
class B1Result:
    rows: int
    slots: int
    seconds: float
    poll_interval: float
    waiter_delay: int
    parallelism: int
    started_at: str
    startup_s: dict[str, float]
    variants: list[VariantResult]
    code: str = ""

    @property
    def ideal_s(self) -> float:
        return ideal_makespan(self.rows, self.slots, self.seconds)


def run(
    rows: int = 200,
    slots: int = 20,
    seconds: int = 10,
    poll_interval: float = 5.0,
    waiter_delay: int = 5,
    parallelism: int = 8,
    warmup: bool = True,
    order: tuple[str, ...] = ("naive", "ours"),
    keep: bool = False,
) -> B1Result:
    work = Path(tempfile.mkdtemp(prefix="hf-bench-b1-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    ideal = ideal_makespan(rows, slots, seconds)
    timeout = max(900.0, ideal * 12)
    try:
        snapshot = package_snapshot(work)
        with MotoStack(count_calls=True) as moto:
            naive_sm = moto.create_state_machine("hyperframes-render-naive")
            machines = {"ours": moto.state_machine_arn, "naive": naive_sm}
            env = {
                **moto.airflow_conn_env(),
                **snapshot.env(),
                "HF_BENCH_OURS_POOL": OURS_POOL,
                "HF_BENCH_NAIVE_POOL": NAIVE_POOL,
                "HF_BENCH_MAX_CONCURRENT": str(rows),
                "HF_BENCH_POLL_INTERVAL": str(poll_interval),
                "HF_BENCH_NAIVE_STATE_MACHINE_ARN": naive_sm,
                "HF_BENCH_WAITER_DELAY": str(waiter_delay),
                # enough attempts for a render queued behind the whole batch
                "HF_BENCH_WAITER_MAX_ATTEMPTS": str(int(timeout / waiter_delay) + 10),
            }
            print(f"[b1] work dir {work}; starting the stack", flush=True)
            with AirflowStack(work / "home", BENCH_DAGS, env=env, parallelism=parallelism) as st:
                print(f"[b1] stack up: {st.startup_seconds}", flush=True)
                st.create_pool(OURS_POOL, slots, include_deferred=True)
                st.create_pool(NAIVE_POOL, slots, include_deferred=True)
                for dag_id in (OURS_DAG_ID, NAIVE_DAG_ID):
                    st.wait_for_dag(dag_id)
                    st.unpause(dag_id)
                watch = MotoWatch(moto)
                if warmup:
                    for name in order:
                        res = _measure(st, moto, watch, name, machines[name], 2, 1, 300.0)
                        print(f"[b1] warm-up {name}: {res.run_state}", flush=True)
                variants = []
                for name in order:
                    res = _measure(st, moto, watch, name, machines[name], rows, seconds, timeout)
                    print(f"[b1] {name}: {asdict(res)}", flush=True)
                    variants.append(res)
                startup = dict(st.startup_seconds)
        return B1Result(
            rows=rows,
            slots=slots,
            seconds=seconds,
            poll_interval=poll_interval,
            waiter_delay=waiter_delay,
            parallelism=parallelism,
            started_at=started_at,
            startup_s=startup,
            variants=variants,
            code=snapshot.label,
        )
    finally:
        if keep:
            print(f"[b1] kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _measure(
    st: AirflowStack,
    moto: MotoStack,
    watch: MotoWatch,
    name: str,
    state_machine_arn: str,
    rows: int,
    seconds: int,
    timeout: float,
) -> VariantResult:
    dag_id, render_task = (
        (OURS_DAG_ID, OURS_RENDER_TASK) if name == "ours" else (NAIVE_DAG_ID, NAIVE_RENDER_TASK)
    )
    token = uuid.uuid4().hex[:8]
    batch = put_batch(
        moto,
        f"bench/b1-{name}-{token}.jsonl",
        # An int: a Wait's SecondsPath must be an integer (`1.0` fails the naive execution,
        # which sends the variables through json.dumps as they are).
        welcome_rows(rows, f"bench/b1-{name}-{token}", hfTestSeconds=int(seconds)),
    )
    watch.reset()
    triggered = datetime.now(UTC)
    run_id = st.trigger(dag_id, {"batch": batch})
    peak = 0
    deadline = time.monotonic() + timeout
    while True:
        peak = max(peak, watch.running(state_machine_arn))
        run = st.dag_run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            print(f"[b1] {name}: run still {run['state']} after {timeout:.0f} s", flush=True)
            break
        time.sleep(1.0)
    # Let any straggler end (a failed run may leave executions behind) before counting.
    settle = time.monotonic() + seconds + 30
    while watch.running(state_machine_arn) and time.monotonic() < settle:
        time.sleep(1.0)
    ended = parse_time(run.get("end_date")) or datetime.now(UTC)
    execs = [
        e
        for e in watch.executions(state_machine_arn)
        if e.start.timestamp() >= triggered.timestamp() - 1
    ]
    by_row = _executions_by_row(watch, execs)
    calls = watch.server_calls()
    tis = st.task_instances(dag_id, run_id)
    renders = [ti for ti in tis if ti.task_id == render_task]
    finish_lags, launches, queue_waits = [], [], []
    for ti in renders:
        ex = by_row.get(ti.map_index)
        if ex is None or ex.stop is None or ti.end_date is None:
            continue
        finish_lags.append(ti.end_date.timestamp() - ex.stop.timestamp())
        if name == "ours" and ti.start_date is not None:  # ours never resumes on a worker
            launches.append(ex.start.timestamp() - ti.start_date.timestamp())
            queued = parse_time(ti.raw.get("queued_when"))
            if queued is not None:
                queue_waits.append(ti.start_date.timestamp() - queued.timestamp())
    phases = {
        label: round(statistics.median(values), 2)
        for label, values in (
            ("executor queue (queued -> task start), median", queue_waits),
            ("worker launch (task start -> execution start), median", launches),
            ("finish lag (execution end -> task end), median", finish_lags),
        )
        if values
    }
    starts = [e.start.timestamp() for e in execs]
    stops = [e.stop.timestamp() for e in execs if e.stop is not None]
    durations = [e.stop.timestamp() - e.start.timestamp() for e in execs if e.stop is not None]
    span = (max(stops) - min(starts)) if starts and stops else float("nan")
    n = max(len(execs), 1)
    ti_states = Counter(str(ti.state) for ti in renders)
    per_task = {
        ti.task_id.split(".")[-1]: round((ti.end_date - ti.start_date).total_seconds(), 2)
        for ti in tis
        if ti.task_id != render_task and ti.start_date and ti.end_date
    }
    slots = int(st.pool_stats(OURS_POOL if name == "ours" else NAIVE_POOL)["slots"])
    return VariantResult(
        name=name,
        run_state=str(run["state"]),
        executions=len(execs),
        statuses=dict(Counter(e.status for e in execs)),
        trigger_to_end_s=round((ended - triggered).total_seconds(), 1),
        trigger_to_first_start_s=round(min(starts) - triggered.timestamp(), 1)
        if starts
        else float("nan"),
        first_start_to_last_end_s=round(span, 1),
        peak_running_sampled=peak,
        peak_running_exact=peak_overlap(execs),
        execution_s_median=round(statistics.median(durations), 2) if durations else float("nan"),
        idle_slot_s_per_row=round((slots * span - sum(durations)) / n, 2),
        finish_lag_s_mean=round(statistics.fmean(finish_lags), 2) if finish_lags else float("nan"),
        ti_phases_s=phases,
        sfn_calls=sfn_calls(calls),
        s3_calls=sum(v for k, v in calls.items() if k.startswith("s3:")),
        render_tis=dict(ti_states),
        task_s=per_task,
    )


def _executions_by_row(watch: MotoWatch, execs: list[Execution]) -> dict[int, Execution]:
    """Executions by row index (= map index: one row per task in both DAGs), read from the
    `OutputS3Uri` in each execution's input (`.../000042.mp4`)."""
    out: dict[int, Execution] = {}
    for ex in execs:
        doc = watch.client.describe_execution(executionArn=ex.arn)
        watch.own_calls["states:DescribeExecution"] += 1
        key = json.loads(doc["input"])["OutputS3Uri"].rsplit("/", 1)[-1]
        out[int(key.split(".", 1)[0])] = ex
    return out


# -- the report ----------------------------------------------------------------------------------


def to_markdown(result: B1Result, *, command: str) -> str:
    ideal = result.ideal_s
    n = result.rows
    by_name = {v.name: v for v in result.variants}

    def row(v: VariantResult) -> str:
        total = sum(v.sfn_calls.values())
        detail = ", ".join(f"{k} {c / max(v.executions, 1):.2f}" for k, c in v.sfn_calls.items())
        label = (
            f"ours: `render_batch`, poll_interval={result.poll_interval:g}"
            if v.name == "ours"
            else f"naive: mapped `StepFunctionStartExecutionOperator`, "
            f"waiter_delay={result.waiter_delay}"
        )
        return (
            f"| {label} | {v.run_state}, {v.executions} executions {v.statuses} "
            f"| {v.trigger_to_end_s:.1f} | {v.trigger_to_end_s / ideal:.2f} "
            f"| {v.first_start_to_last_end_s:.1f} | {v.first_start_to_last_end_s / ideal:.2f} "
            f"| {v.trigger_to_first_start_s:.1f} | {v.peak_running_sampled} / "
            f"{v.peak_running_exact} | {v.idle_slot_s_per_row:.2f} "
            f"| {total / max(v.executions, 1):.2f} ({detail}) |"
        )

    lines = [
        f"## {SECTION_ID}: Lambda batch makespan vs ideal, ours vs the naive mapped operator",
        "",
        f"Measured {result.started_at} with `{command}`.",
        "",
        f"Machine: {machine_line()}. One real Airflow stack (api-server, scheduler, "
        f"dag-processor, triggerer; LocalExecutor, SQLite, `parallelism={result.parallelism}`) "
        "and one moto server (counting calls) standing in for AWS; the DAGs "
        "(`benchmarks/dags/hf_bench_ours.py`, `hf_bench_naive.py`) ran on that stack one after "
        f"the other, each after a 2-row warm-up run. Code: {result.code}.",
        "",
        f"Workload: {n} rows, each an execution of the test state machine that lasts "
        f"{result.seconds:g} s (`hfTestSeconds`), pool of {result.slots} slots with "
        f"`include_deferred` per variant. Ideal = ceil({n}/{result.slots}) x "
        f"{result.seconds:g} s = **{ideal:g} s**. Nothing is asserted; read the ratios.",
        "",
        "| approach | outcome | trigger -> run end (s) | x ideal | first start -> last end (s) "
        "| x ideal | trigger -> first start (s) | peak RUNNING sampled / exact "
        "| idle slot-s per row | SFN calls per render |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(v) for v in result.variants]
    lines.append("")
    ours, naive = by_name.get("ours"), by_name.get("naive")
    if ours and naive:
        lines.append(
            f"- Side by side: ours / naive = "
            f"{ours.trigger_to_end_s / naive.trigger_to_end_s:.2f} (trigger -> run end), "
            f"{ours.first_start_to_last_end_s / naive.first_start_to_last_end_s:.2f} "
            "(first start -> last end)."
        )
    need = result.slots / result.seconds
    rates = ", ".join(
        f"{v.name} {v.executions / v.first_start_to_last_end_s:.2f}"
        for v in result.variants
        if v.first_start_to_last_end_s
    )
    short = [v.name for v in result.variants if v.peak_running_exact < result.slots]
    verdict = (
        f"{' and '.join(short)} never filled the pool (peak RUNNING below {result.slots}), "
        f"so {'they are' if len(short) > 1 else 'it is'} bound by how fast Airflow gets a "
        "render task from queued to StartExecution on this machine (ours: one worker "
        "launch per row; naive: two), not by the pool. Longer renders need fewer starts "
        "per second, so the ratio to ideal falls as renders grow."
        if short
        else "Both filled the pool at their peak."
    )
    lines.append(
        f"- Reading: keeping {result.slots} slots busy with {result.seconds:g} s renders needs "
        f"{need:.2f} renders started per second; achieved (rows / first start -> last end): "
        f"{rates}. {verdict}"
    )
    for v in result.variants:
        lines.append(
            f"- {v.name}: render task instances {v.render_tis}; median execution "
            f"{v.execution_s_median:.2f} s; S3 calls {v.s3_calls}; other tasks "
            + (", ".join(f"{k} {s:.2f} s" for k, s in v.task_s.items()) or "none")
            + "; per render task: "
            + ", ".join(f"{k} {s:.2f} s" for k, s in v.ti_phases_s.items())
            + "."
        )
    lines += [
        "- *Idle slot-s per row* = (slots x (first start -> last end) - sum of execution "
        "durations) / rows: how long a pool slot sits without a running execution per row "
        "(task launch, scheduling, the poll lag after the execution ended). Zero is the ideal. "
        "Per render task: *finish lag* = execution end -> task end (status poll, trigger "
        "event, and for the naive operator a second worker launch to run `execute_complete`, "
        "which is why its task start is not comparable and only ours shows the launch); "
        "*worker launch* = task start -> execution start (task process, DAG parse, "
        "StartExecution); *executor queue* = queued -> task start (`parallelism` slots).",
        "- Peak RUNNING: sampled = `ListExecutions(RUNNING)` every second (those calls are "
        "left out of the call counts); exact = maximum overlap of the executions' start/stop "
        "dates.",
        f"- Stack start-up (not in the makespans): {result.startup_s.get('total')} s.",
        "",
    ]
    return "\n".join(lines)
