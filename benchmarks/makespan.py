"""B1: makespan of a Lambda batch vs the ideal and vs Airflow's own floor, on a real stack.

N rows, each a Step Functions execution lasting `seconds` (the moto test stack's
`hfTestSeconds`), a pool of `slots` slots with `include_deferred` per variant, ideal =
ceil(N / slots) x seconds. Variants, one after the other on one stack (each after a 2-row
warm-up run that is not measured):

- floor: `hf_bench_floor`, a trivial operator that defers at once to a trigger that sleeps
  `seconds` and ends the task from the triggerer (what Airflow itself costs per deferred task);
- naive: `hf_bench_naive`, mapped `StepFunctionStartExecutionOperator(deferrable=True,
  waiter_delay=5)`, what a DAG author writes without us;
- ours: `hf_bench_ours`, `render_batch` with one mapped render task per row;
- lanes: `hf_bench_lanes`, `render_batch(rows_per_task=10)`: N/10 lanes in the same `slots`
  (ideal unchanged: each lane renders its 10 rows back to back in one slot).

A "stack" is (database, multiprocessing start method): SQLite or a private PostgreSQL from
Debian's package; `fork` (the default on Linux) or `forkserver` with `mp_forkserver_preload`.
Measured per variant: trigger -> run end, first render start -> last render end, peak running
(pool slots in use, sampled each second; executions overlapping, exact), per-row slot idle time,
the render tasks' median `dag_file_parse_ms` (their logs' "Worker startup parse complete"), and
Execution API requests per render task (the api-server's access log, attributed by task
instance id and task id).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._support import (
    LoadSampler,
    MotoWatch,
    Snapshot,
    Table,
    bench_stack,
    bytecode_check,
    fmt,
    ideal_makespan,
    log_offset,
    machine_line,
    median,
    package_snapshot,
    parse_ms,
    peak_overlap,
    put_batch,
    route,
    save_results,
    sfn_calls,
    stack_label,
    start_method_env,
    task_logs,
    welcome_rows,
)
from devstack.airflow_stack import AirflowStack, TaskInstanceInfo, parse_time
from devstack.moto_stack import MotoStack

SECTION_ID = "B1"
VARIANTS = ("floor", "naive", "ours", "lanes")


@dataclass(frozen=True)
class Variant:
    name: str
    dag_id: str
    task_id: str
    pool: str
    rows_per_task: int = 1

    @property
    def uses_sfn(self) -> bool:
        return self.name != "floor"


CATALOGUE = {
    "floor": Variant("floor", "hf_bench_floor", "render", "bench_floor"),
    "naive": Variant("naive", "hf_bench_naive", "render", "bench_naive"),
    "ours": Variant("ours", "hf_bench_ours", "render_batch.render", "bench_ours"),
    "lanes": Variant("lanes", "hf_bench_lanes", "render_batch.render", "bench_lanes", 10),
}


@dataclass
class StackSpec:
    database: str
    start_method: str = "fork"
    variants: tuple[str, ...] = VARIANTS

    @classmethod
    def parse(cls, text: str) -> StackSpec:
        """`postgres`, `sqlite:fork`, `postgres:forkserver:floor,ours`."""
        parts = text.split(":")
        variants = tuple(parts[2].split(",")) if len(parts) > 2 else VARIANTS
        unknown = set(variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}")
        return cls(parts[0], parts[1] if len(parts) > 1 else "fork", variants)

    @property
    def label(self) -> str:
        return stack_label(self.database, self.start_method)


@dataclass
class VariantResult:
    name: str
    run_state: str
    tasks: int
    executions: int
    statuses: dict[str, int]
    trigger_to_end_s: float
    first_start_to_last_end_s: float
    peak_slots_sampled: int
    peak_running_exact: int
    idle_slot_s_per_row: float
    parse_ms_median: float
    parse_ms_count: int
    exec_api_per_task: float
    exec_api_routes: dict[str, float]
    sfn_calls: dict[str, int]
    phases_s: dict[str, float] = field(default_factory=dict)
    other_tasks_s: dict[str, float] = field(default_factory=dict)


@dataclass
class StackResult:
    spec: StackSpec
    startup_s: dict[str, float]
    variants: list[VariantResult]
    error: str = ""
    started_at: str = ""
    load: str = ""


@dataclass
class B1Result:
    rows: int
    slots: int
    seconds: int
    parallelism: int
    started_at: str
    code: str
    bytecode: str
    stacks: list[StackResult]

    @property
    def ideal_s(self) -> float:
        return ideal_makespan(self.rows, self.slots, self.seconds)


def run(
    stacks: list[StackSpec],
    rows: int = 200,
    slots: int = 20,
    seconds: int = 10,
    parallelism: int = 8,
    keep: bool = False,
    prior: list[StackResult] | None = None,
) -> B1Result:
    work = Path(tempfile.mkdtemp(prefix="hf-bench-b1-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    snapshot = package_snapshot(work)
    results: list[StackResult] = list(prior or [])
    try:
        for n, spec in enumerate(stacks):
            began = datetime.now(UTC).isoformat(timespec="seconds")
            with LoadSampler() as load:
                try:
                    stack = _run_stack(
                        work / f"stack-{n}",
                        spec,
                        snapshot,
                        rows,
                        slots,
                        seconds,
                        parallelism,
                    )
                except Exception as exc:  # keep the other stacks' results; say what failed
                    print(f"[b1] {spec.label} failed: {exc!r}", flush=True)
                    stack = StackResult(spec, {}, [], error=f"{type(exc).__name__}: {exc}")
            stack.started_at, stack.load = began, load.note()
            results.append(stack)
            save_results(f"{SECTION_ID}.partial", results)
        return B1Result(
            rows=rows,
            slots=slots,
            seconds=seconds,
            parallelism=parallelism,
            started_at=started_at,
            code=snapshot.label,
            bytecode=bytecode_check(),
            stacks=results,
        )
    finally:
        if keep:
            print(f"[b1] kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def load_stacks(path: Path) -> list[StackResult]:
    """Stacks measured by an earlier run (its `results/*.json`), to report beside new ones."""
    out = []
    for doc in json.loads(path.read_text(encoding="utf-8")):
        spec = StackSpec(**{**doc["spec"], "variants": tuple(doc["spec"]["variants"])})
        variants = [VariantResult(**v) for v in doc["variants"]]
        out.append(
            StackResult(
                spec,
                doc["startup_s"],
                variants,
                doc.get("error", ""),
                doc.get("started_at", ""),
                doc.get("load", ""),
            )
        )
    return out


def _run_stack(
    work: Path,
    spec: StackSpec,
    snapshot: Snapshot,
    rows: int,
    slots: int,
    seconds: int,
    parallelism: int,
) -> StackResult:
    ideal = ideal_makespan(rows, slots, seconds)
    timeout = max(600.0, ideal * 8)
    with MotoStack(count_calls=True) as moto:
        naive_sm = moto.create_state_machine("hyperframes-render-naive")
        machines = {
            "naive": naive_sm,
            "ours": moto.state_machine_arn,
            "lanes": moto.state_machine_arn,
            "floor": "",
        }
        env = {
            **moto.airflow_conn_env(),
            **snapshot.env(),
            "HF_BENCH_NAIVE_STATE_MACHINE_ARN": naive_sm,
            "HF_BENCH_WAITER_DELAY": "5",
            "HF_BENCH_WAITER_MAX_ATTEMPTS": str(int(timeout / 5) + 10),
            "HF_BENCH_ROWS_PER_TASK": "10",
        }
        env.update(start_method_env(spec.start_method))
        print(f"[b1] {spec.label}: starting the stack", flush=True)
        with bench_stack(
            spec.database, work / "home", snapshot.dags, env, parallelism=parallelism
        ) as (st, _pg):
            print(f"[b1] stack up: {st.startup_seconds}", flush=True)
            for name in spec.variants:
                v = CATALOGUE[name]
                st.create_pool(v.pool, slots, include_deferred=True)
                st.wait_for_dag(v.dag_id)
                st.unpause(v.dag_id)
            watch = MotoWatch(moto)
            out = []
            for name in spec.variants:
                v = CATALOGUE[name]
                warm = _measure(st, moto, watch, v, machines[name], 2, 1, 300.0, warmup=True)
                print(f"[b1] warm-up {name}: {warm.run_state}", flush=True)
                res = _measure(st, moto, watch, v, machines[name], rows, seconds, timeout)
                print(f"[b1] {spec.label} {name}: {res}", flush=True)
                out.append(res)
            return StackResult(spec=spec, startup_s=dict(st.startup_seconds), variants=out)


def _trigger(st: AirflowStack, moto: MotoStack, v: Variant, rows: int, seconds: int) -> str:
    if v.name == "floor":
        return st.trigger(v.dag_id, {"rows": rows, "seconds": seconds})
    token = uuid.uuid4().hex[:8]
    # An int: a Wait's SecondsPath must be an integer.
    batch = put_batch(
        moto,
        f"bench/b1-{v.name}-{token}.jsonl",
        welcome_rows(rows, f"bench/b1-{v.name}-{token}", hfTestSeconds=int(seconds)),
    )
    return st.trigger(v.dag_id, {"batch": batch})


def _measure(
    st: AirflowStack,
    moto: MotoStack,
    watch: MotoWatch,
    v: Variant,
    state_machine_arn: str,
    rows: int,
    seconds: int,
    timeout: float,
    *,
    warmup: bool = False,
) -> VariantResult:
    api_log = st.logs_dir / "api-server.log"
    offset = log_offset(api_log)
    watch.reset()
    triggered = datetime.now(UTC)
    run_id = _trigger(st, moto, v, rows, seconds)
    peak = 0
    deadline = time.monotonic() + timeout
    while True:
        stats = st.pool_stats(v.pool)
        peak = max(peak, int(stats.get("running_slots", 0)) + int(stats.get("deferred_slots", 0)))
        run = st.dag_run(v.dag_id, run_id)
        if run["state"] in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            print(f"[b1] {v.name}: run still {run['state']} after {timeout:.0f} s", flush=True)
            break
        time.sleep(1.0)
    ended = parse_time(run.get("end_date")) or datetime.now(UTC)
    tis = st.task_instances(v.dag_id, run_id)
    renders = [ti for ti in tis if ti.task_id == v.task_id]
    if warmup:
        return _empty(v.name, str(run["state"]), len(renders))
    time.sleep(2.0)  # let the api-server flush its last access lines
    execs = []
    if v.uses_sfn:
        execs = [
            e
            for e in watch.executions(state_machine_arn)
            if e.start.timestamp() >= triggered.timestamp() - 1
        ]
    calls = watch.server_calls()
    if execs:
        intervals = [(e.start.timestamp(), e.stop.timestamp() if e.stop else None) for e in execs]
        busy = sum(e.stop.timestamp() - e.start.timestamp() for e in execs if e.stop)
    else:
        intervals = [
            (ti.start_date.timestamp(), ti.end_date.timestamp() if ti.end_date else None)
            for ti in renders
            if ti.start_date
        ]
        busy = float(rows * seconds)
    starts = [a for a, _ in intervals]
    stops = [b for _, b in intervals if b is not None]
    span = (max(stops) - min(starts)) if starts and stops else float("nan")
    slots = int(st.pool_stats(v.pool)["slots"])
    parse = parse_ms(task_logs(st, v.dag_id, run_id, v.task_id))
    api_total, api_routes = _render_api_calls(api_log, offset, renders, v.task_id)
    return VariantResult(
        name=v.name,
        run_state=str(run["state"]),
        tasks=len(renders),
        executions=len(execs),
        statuses=dict(Counter(e.status for e in execs))
        if execs
        else dict(Counter(str(ti.state) for ti in renders)),
        trigger_to_end_s=round((ended - triggered).total_seconds(), 1),
        first_start_to_last_end_s=round(span, 1),
        peak_slots_sampled=peak,
        peak_running_exact=peak_overlap(intervals),
        idle_slot_s_per_row=round((slots * span - busy) / max(rows, 1), 2),
        parse_ms_median=round(median(parse), 1),
        parse_ms_count=len(parse),
        exec_api_per_task=round(api_total / max(len(renders), 1), 2),
        exec_api_routes={k: round(c / max(len(renders), 1), 2) for k, c in api_routes.items()},
        sfn_calls=sfn_calls(calls),
        phases_s=_phases(renders, execs, v),
        other_tasks_s={
            ti.task_id.split(".")[-1]: round((ti.end_date - ti.start_date).total_seconds(), 2)
            for ti in tis
            if ti.task_id != v.task_id and ti.start_date and ti.end_date
        },
    )


def _empty(name: str, state: str, tasks: int) -> VariantResult:
    nan = float("nan")
    return VariantResult(name, state, tasks, 0, {}, nan, nan, 0, 0, nan, nan, 0, nan, {}, {})


def _render_api_calls(
    log: Path, offset: int, renders: list[TaskInstanceInfo], task_id: str
) -> tuple[int, Counter[str]]:
    """Execution API requests made for the render task instances: paths that name one of
    their ids, or XCom paths of the render task."""
    ids = {str(ti.raw.get("id")) for ti in renders if ti.raw.get("id")}
    counts: Counter[str] = Counter()
    for key, n in execution_api_calls_raw(log, offset).items():
        method, path = key
        parts = path.split("/")
        mine = any(i in path for i in ids) or (
            len(parts) > 5 and parts[2] == "xcoms" and parts[5] == task_id
        )
        if mine:
            counts[f"{method} {route(path)}"] += n
    return sum(counts.values()), counts


def execution_api_calls_raw(log: Path, offset: int) -> Counter[tuple[str, str]]:
    """(method, concrete path) counts: `execution_api_calls` before routes are folded."""
    from benchmarks._support import _METHOD, _PATH

    counts: Counter[tuple[str, str]] = Counter()
    with log.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            line = raw.decode(errors="replace")
            if "request finished" not in line or "/execution/" not in line:
                continue
            path, method = _PATH.search(line), _METHOD.search(line)
            if path:
                counts[(method.group(1) if method else "?", path.group(1))] += 1
    return counts


def _phases(renders: list[TaskInstanceInfo], execs: list[Any], v: Variant) -> dict[str, float]:
    """Median render task start -> end, and for one-row tasks the slot's overheads around its
    execution: task start -> execution start, execution end -> task end."""
    durations = [
        (ti.end_date - ti.start_date).total_seconds()
        for ti in renders
        if ti.start_date and ti.end_date
    ]
    out = {"render task start -> end": round(median(durations), 2)}
    if execs and v.rows_per_task == 1 and len(execs) == len(renders):
        # One execution per task: pair them in start order (good enough for medians).
        task_starts = sorted(ti.start_date.timestamp() for ti in renders if ti.start_date)
        exec_starts = sorted(e.start.timestamp() for e in execs)
        lead = [e - t for t, e in zip(task_starts, exec_starts, strict=False)]
        out["task start -> execution start (paired by order)"] = round(median(lead), 2)
    return out


# -- the report ----------------------------------------------------------------------------------


def to_markdown(result: B1Result, *, command: str, load_note: str) -> str:
    ideal = result.ideal_s
    labels = {
        "floor": "Airflow's floor: trivial operator, defers at once, trigger sleeps and ends "
        "the task",
        "naive": "naive: mapped `StepFunctionStartExecutionOperator`, deferrable, waiter_delay=5",
        "ours": "`render_batch`, one render task per row",
        "lanes": "`render_batch(rows_per_task=10)`, lanes (LANES)",
    }
    table = Table(
        [
            "stack",
            "variant",
            "outcome",
            "trigger -> run end (s)",
            "x ideal",
            "x floor",
            "first start -> last end (s)",
            "peak running: slots sampled / exact",
            "idle slot-s per row",
            "render tasks' median `dag_file_parse_ms` (n)",
            "Execution API calls per render task",
            "SFN calls per row",
        ]
    )
    for stack in result.stacks:
        floor = next((v for v in stack.variants if v.name == "floor"), None)
        for v in stack.variants:
            x_floor = fmt(v.trigger_to_end_s / floor.trigger_to_end_s, 2) if floor else "n/a"
            per_row = ", ".join(
                f"{k} {c / max(result.rows, 1):.2f}" for k, c in v.sfn_calls.items()
            )
            table.add(
                stack.spec.label,
                labels[v.name].replace("LANES", _lane_note(result)),
                f"{v.run_state}, {v.tasks} tasks, {v.statuses}",
                fmt(v.trigger_to_end_s),
                fmt(v.trigger_to_end_s / ideal, 2),
                x_floor,
                fmt(v.first_start_to_last_end_s),
                f"{v.peak_slots_sampled} / {v.peak_running_exact}",
                fmt(v.idle_slot_s_per_row, 2),
                f"{fmt(v.parse_ms_median, 0)} ({v.parse_ms_count})",
                fmt(v.exec_api_per_task, 1),
                per_row or "none",
            )
    lines = [
        f"## {SECTION_ID}: Lambda batch makespan vs ideal and vs Airflow's floor",
        "",
        f"Measured {result.started_at} with `{command}`.",
        "",
        f"Machine: {machine_line()}. Code: {result.code}; bytecode: {result.bytecode} (and the "
        "snapshot compiled). Per stack: one real Airflow stack (api-server, scheduler, "
        f"dag-processor, triggerer; LocalExecutor, `parallelism={result.parallelism}`) and one "
        "moto server (counting calls) standing in for AWS; the variants ran one after the "
        "other on it, each after a 2-row warm-up run. PostgreSQL is a private Debian "
        "`postgresql` 15 cluster started by the benchmark (fsync off).",
        "",
        f"Workload: {result.rows} rows, each an execution lasting {result.seconds} s "
        f"(`hfTestSeconds`; the floor's trigger sleeps as long), a pool of {result.slots} slots "
        f"with `include_deferred` per variant. Ideal = ceil({result.rows}/{result.slots}) x "
        f"{result.seconds} s = **{ideal:g} s**. Nothing is asserted; read the ratios.",
        "",
        table.render(),
        "",
    ]
    for stack in result.stacks:
        for v in stack.variants:
            routes = ", ".join(f"`{k}` {c:g}" for k, c in sorted(v.exec_api_routes.items()))
            lines.append(
                f"- {stack.spec.label}, {v.name}: Execution API per render task: "
                f"{routes or 'none'}; "
                f"phases (median): "
                + ", ".join(f"{k} {s:g} s" for k, s in v.phases_s.items())
                + "; other tasks: "
                + (", ".join(f"{k} {s:g} s" for k, s in v.other_tasks_s.items()) or "none")
                + "."
            )
        lines.append(
            f"- {stack.spec.label}: stack start-up (not in the makespans) "
            f"{stack.startup_s.get('total')} s."
            + (f" Measured from {stack.started_at}." if stack.started_at else "")
            + (f" {stack.load}" if stack.load else "")
            + (f" **This stack failed**: {stack.error}" if stack.error else "")
        )
    lines += [
        "- *x floor* = trigger -> run end over the floor's in the same stack. *Idle slot-s per "
        "row* = (slots x (first start -> last end) - busy seconds) / rows, busy = the "
        "executions' own durations (the floor: rows x seconds): how long a pool slot holds no "
        "running render, per row. *Peak running*: pool slots in use (running + deferred, "
        "sampled each second) / most executions (the floor: task instances) overlapping, from "
        "their start and stop dates.",
        '- `dag_file_parse_ms`: from every render task log\'s "Worker startup parse complete" '
        "line (the naive operator's tasks are launched twice: start, then `execute_complete`). "
        "Execution API calls: the api-server's access log lines under `/execution/` that name a "
        "render task instance's id, or its task's XComs; the triggerer's own calls go through "
        "its in-process API client and are not in that log.",
        f"- {load_note}",
        "",
    ]
    return "\n".join(lines)


def _lane_note(result: B1Result) -> str:
    return f"{-(-result.rows // 10)} tasks of 10 rows"
