"""B4: time until 1,000 renders are running, ours vs Airflow's floor vs boto3 vs the Node CLI.

Every execution hangs (`hfTestFate: "hang"`), so nothing ends while the rest are started:

- bare boto3: `ThreadPoolExecutor(16)` making N `start_execution` calls (input built
  beforehand): the most this machine and moto can do, no validation or bookkeeping at all;
- Node CLI: `hyperframes lambda render-batch --json` (`--max-concurrent` 50, its default, and
  16), `AWS_ENDPOINT_URL` at moto: parse, validate, upload the site, StartExecution per row;
- Airflow's floor: `hf_bench_floor` with N trivial tasks that defer at once (their trigger
  sleeps for an hour), pool of N slots: trigger -> N task instances deferred (pool stats);
- ours: `hf_bench_ours` (`render_batch`, one task per row), pool of N slots: trigger -> the
  N-th StartExecution counted by moto (each render task defers at once; its trigger starts it);
- ours, wide: `hf_bench_wide` (`render_batch(renders_per_task=10)`): N/10 tasks, each holding
  10 pool slots and starting its 10 rows at once: fewer task launches than renders.

Each variant gets its own fresh moto server; the Airflow variants run one after the other on
one stack per `DATABASE[:START_METHOD[:VARIANT,...]]` (each after a 2-row warm-up run, the next
only once the last one's killed tasks are done). `forkserver` preloads our DAG files' imports
(`[core] mp_forkserver_preload`), so a task process does not import the Amazon provider, boto3
and our package again. Polled twice a second.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import _node_cli
from benchmarks._support import (
    WELCOME,
    MotoWatch,
    Table,
    bench_stack,
    execution_api_calls,
    fmt,
    jsonl,
    log_offset,
    machine_line,
    median,
    package_snapshot,
    parse_ms,
    put_batch,
    retrying,
    sfn_calls,
    stack_label,
    start_method_env,
    task_logs,
    welcome_rows,
)
from devstack.airflow_stack import AirflowStack
from devstack.moto_stack import TEST_CREDENTIALS, MotoStack

SECTION_ID = "B4"
MARKS = (0.25, 0.5, 0.75, 1.0)
#: The Airflow variants: (DAG, render task, pool, name in the table).
AIRFLOW_VARIANTS = {
    "floor": (
        "hf_bench_floor",
        "render",
        "bench_floor",
        "Airflow's floor: trivial tasks that defer at once",
    ),
    "ours": (
        "hf_bench_ours",
        "render_batch.render",
        "bench_ours",
        "ours: `render_batch`, one render task per row",
    ),
    "wide": (
        "hf_bench_wide",
        "render_batch.render",
        "bench_wide",
        "ours: `render_batch(renders_per_task=10)`, 10 renders per task",
    ),
}


@dataclass
class DispatchResult:
    name: str
    stack: str | None
    started: int
    wall_s: float | None
    marks_s: dict[str, float] = field(default_factory=dict)
    sfn_calls: dict[str, int] = field(default_factory=dict)
    parse_ms_median: float | None = None
    exec_api_per_render: float | None = None
    tasks: int | None = None
    note: str = ""


@dataclass
class B4Result:
    rows: int
    threads: int
    parallelism: int
    started_at: str
    node_versions: str | None
    code: str
    variants: list[DispatchResult]


def run(
    rows: int = 1000,
    threads: int = 16,
    parallelism: int = 8,
    stacks: tuple[str, ...] = ("postgres",),
    timeout: float = 1200.0,
    keep: bool = False,
) -> B4Result:
    work = Path(tempfile.mkdtemp(prefix="hf-bench-b4-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    variants: list[DispatchResult] = []
    snapshot = package_snapshot(work)
    try:
        variants.append(_boto3(rows, threads))
        print(f"[b4] {variants[-1]}", flush=True)
        node = _node_cli.ensure()
        for concurrency in (50, threads):
            if isinstance(node, str):
                variants.append(DispatchResult(f"node {concurrency}", None, 0, None, note=node))
            else:
                variants.append(_node(node, work / f"node-{concurrency}", rows, concurrency))
            print(f"[b4] {variants[-1]}", flush=True)
        for i, text in enumerate(stacks):
            db, _, rest = text.partition(":")
            start_method, _, names = rest.partition(":")
            label = stack_label(db, start_method or "fork")
            with MotoStack(count_calls=True) as moto:
                env = {
                    **moto.airflow_conn_env(),
                    **snapshot.env(),
                    **start_method_env(start_method or "fork"),
                }
                with bench_stack(
                    db, work / f"home-{i}", snapshot.dags, env, parallelism=parallelism
                ) as (st, _pg):
                    print(f"[b4] {label} stack up: {st.startup_seconds}", flush=True)
                    for name in names.split(",") if names else ("floor", "ours", "wide"):
                        res = _airflow(st, moto, name, label, rows, timeout)
                        print(f"[b4] {res}", flush=True)
                        variants.append(res)
        return B4Result(
            rows,
            threads,
            parallelism,
            started_at,
            None if isinstance(node, str) else node.versions,
            snapshot.label,
            variants,
        )
    finally:
        if keep:
            print(f"[b4] kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _execution_input(bucket: str, row: dict[str, Any]) -> str:
    return json.dumps(
        {
            "ProjectS3Uri": f"s3://{bucket}/sites/bench/project.tar.gz",
            "PlanOutputS3Prefix": f"s3://{bucket}/renders/{uuid.uuid4().hex}/",
            "OutputS3Uri": f"s3://{bucket}/{row['outputKey']}",
            "Config": {
                "fps": 30,
                "width": 640,
                "height": 360,
                "format": "mp4",
                "variables": row["variables"],
            },
            "PlanProtocol": "v2",
        },
        separators=(",", ":"),
    )


def _boto3(rows: int, threads: int) -> DispatchResult:
    import boto3
    from botocore.config import Config

    batch = welcome_rows(rows, "bench/b4-boto3", hfTestFate="hang")
    with MotoStack(count_calls=True) as moto:
        client = boto3.client(
            "stepfunctions",
            endpoint_url=moto.endpoint_url,
            region_name=moto.region,
            config=Config(max_pool_connections=threads * 2, retries={"max_attempts": 1}),
            **TEST_CREDENTIALS,
        )
        inputs = [_execution_input(moto.bucket, r) for r in batch]
        moto.reset_calls()
        done_at: list[float] = []

        def start(doc: str) -> None:
            client.start_execution(
                stateMachineArn=moto.state_machine_arn,
                name=f"hf-bench-{uuid.uuid4().hex}",
                input=doc,
            )
            done_at.append(time.monotonic())

        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(start, inputs))
        wall = time.monotonic() - t0
        calls = moto.calls()
    done_at.sort()
    marks = {f"{int(f * 100)}%": round(done_at[max(0, int(rows * f) - 1)] - t0, 1) for f in MARKS}
    return DispatchResult(
        f"bare boto3, ThreadPoolExecutor({threads})",
        None,
        calls["states:StartExecution"],
        round(wall, 1),
        marks,
        sfn_calls(calls),
        note="start_execution only (inputs built beforehand)",
    )


def _node(node: _node_cli.NodeCli, work: Path, rows: int, concurrency: int) -> DispatchResult:
    work.mkdir(parents=True, exist_ok=True)
    batch = work / "rows.jsonl"
    batch.write_text(
        jsonl(welcome_rows(rows, f"bench/b4-node{concurrency}", hfTestFate="hang")),
        encoding="utf-8",
    )
    with MotoStack(count_calls=True) as moto:
        _node_cli.write_stack_state(
            work, bucket=moto.bucket, state_machine_arn=moto.state_machine_arn, region=moto.region
        )
        env = node.env(
            {
                "AWS_ENDPOINT_URL": moto.endpoint_url,
                "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
                "AWS_REGION": moto.region,
            }
        )
        argv = node.argv(
            "lambda",
            "render-batch",
            str(WELCOME),
            "--batch",
            str(batch),
            "--width",
            "640",
            "--height",
            "360",
            "--max-concurrent",
            str(concurrency),
            "--json",
        )
        moto.reset_calls()
        measured = _node_cli.run_measured(argv, cwd=work, env=env, stdout=work / "out.txt")
        calls = moto.calls()
    started = len(re.findall(rb'"status":\s*"started"', measured.stdout.read_bytes()))
    note = f"rc={measured.returncode}, {started} rows reported started; includes CLI start-up"
    return DispatchResult(
        f"Node CLI `lambda render-batch --max-concurrent {concurrency}`",
        None,
        calls["states:StartExecution"],
        measured.wall_s,
        sfn_calls=sfn_calls(calls),
        note=note,
    )


def _airflow(
    st: AirflowStack, moto: MotoStack, name: str, db: str, rows: int, timeout: float
) -> DispatchResult:
    dag_id, task_id, pool, title = AIRFLOW_VARIANTS[name]
    st.create_pool(pool, rows + 10, include_deferred=True)
    st.wait_for_dag(dag_id)
    st.unpause(dag_id)
    watch = MotoWatch(moto)
    # Warm-up: 2 rows that end at once.
    if name == "floor":
        warm = st.trigger(dag_id, {"rows": 2, "seconds": 1})
    else:
        warm = st.trigger(
            dag_id,
            {"batch": put_batch(moto, "bench/b4-warm.jsonl", welcome_rows(2, "bench/b4-warm"))},
        )
    print(f"[b4] warm-up {name}: {st.wait_for_run(dag_id, warm, timeout=300)}", flush=True)
    api_log = st.logs_dir / "api-server.log"
    offset = log_offset(api_log)
    watch.reset()
    count_fn: Callable[[], int]
    if name == "floor":
        run_id = st.trigger(dag_id, {"rows": rows, "seconds": 3600})
        t0 = time.monotonic()

        def count_fn() -> int:
            return int(retrying(lambda: st.pool_stats(pool)).get("deferred_slots", 0))
    else:
        batch = put_batch(
            moto, "bench/b4-ours.jsonl", welcome_rows(rows, "bench/b4-ours", hfTestFate="hang")
        )
        run_id = st.trigger(dag_id, {"batch": batch})
        t0 = time.monotonic()

        def count_fn() -> int:
            return int(watch.server_calls()["states:StartExecution"])

    seen: list[tuple[float, int]] = []
    count = 0
    while count < rows and time.monotonic() - t0 < timeout:
        time.sleep(0.5)
        count = count_fn()
        seen.append((time.monotonic() - t0, count))
    elapsed = time.monotonic() - t0
    calls = watch.server_calls()
    marks = {}
    for frac in MARKS:
        hit = next((t for t, c in seen if c >= max(1, int(rows * frac))), None)
        if hit is not None:
            marks[f"{int(frac * 100)}%"] = round(hit, 1)
    time.sleep(2.0)
    api = execution_api_calls(api_log, offset)
    parse = parse_ms(task_logs(st, dag_id, run_id, task_id))
    tasks = sum(1 for ti in retrying(lambda: st.task_instances(dag_id, run_id, task_id)))
    st.patch_dag_run_state(dag_id, run_id, "failed")  # end the hanging run before the next one
    _wait_until_settled(st, dag_id, run_id)
    return DispatchResult(
        name=title,
        stack=db,
        started=count,
        wall_s=round(elapsed, 1) if count >= rows else None,
        marks_s=marks,
        sfn_calls=sfn_calls(calls),
        parse_ms_median=round(median(parse), 1),
        exec_api_per_render=round(sum(api.values()) / max(count, 1), 2),
        tasks=tasks,
        note=(
            "trigger -> N task instances deferred (pool stats)"
            if name == "floor"
            else "trigger -> N-th StartExecution at moto"
        )
        + ("" if count >= rows else f"; only {count}/{rows} after {timeout:.0f} s"),
    )


def _wait_until_settled(st: AirflowStack, dag_id: str, run_id: str, limit_s: float = 600) -> None:
    """Until the failed run's tasks are done (each killed lane stops its hanging renders), so
    the next variant does not share the machine with those stops."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(5.0)
        live = [
            ti
            for ti in retrying(lambda: st.task_instances(dag_id, run_id))
            if ti.state in ("running", "deferred", "queued", "scheduled", "restarting")
        ]
        if not live:
            return
    print(f"[b4] {dag_id}: tasks still live {limit_s:g} s after the run failed", flush=True)


def to_markdown(result: B4Result, *, command: str, load_note: str) -> str:
    base = next((v for v in result.variants if v.name.startswith("bare boto3")), None)
    floors = {v.stack: v for v in result.variants if v.name.startswith("Airflow's floor")}
    table = Table(
        [
            "approach",
            "stack",
            "running",
            "wall until all running (s)",
            "x bare boto3",
            "x Airflow's floor",
            "25% / 50% / 75% / 100% (s)",
            "render tasks' median `dag_file_parse_ms`",
            "render task instances",
            "Execution API calls per render (all tasks)",
            "SFN calls per row",
            "notes",
        ]
    )
    for v in result.variants:
        floor = floors.get(v.stack)
        x_base = fmt(v.wall_s / base.wall_s, 1) if v.wall_s and base and base.wall_s else "n/a"
        x_floor = (
            fmt(v.wall_s / floor.wall_s, 2)
            if v.wall_s and floor and floor.wall_s and v.stack
            else "n/a"
        )
        per_row = ", ".join(f"{k} {c / max(v.started, 1):.2f}" for k, c in v.sfn_calls.items())
        table.add(
            v.name,
            v.stack or "-",
            f"{v.started:,}",
            fmt(v.wall_s) if v.wall_s else "not reached",
            x_base,
            x_floor,
            " / ".join(f"{s:g}" for s in v.marks_s.values()) or "n/a",
            fmt(v.parse_ms_median, 0),
            f"{v.tasks:,}" if v.tasks is not None else "-",
            fmt(v.exec_api_per_render, 1),
            per_row or "none",
            v.note,
        )
    return "\n".join(
        [
            f"## {SECTION_ID}: time until {result.rows:,} renders are running",
            "",
            f"Measured {result.started_at} with `{command}`.",
            "",
            f"Machine: {machine_line()}. Node side: {result.node_versions or 'unavailable'}. "
            f"Code: {result.code}. Airflow: LocalExecutor, `parallelism={result.parallelism}`, "
            f"pool of {result.rows + 10} slots with `include_deferred`. Every execution hangs, so "
            "nothing ends while the rest start. Nothing is asserted.",
            "",
            table.render(),
            "",
            "- Execution API calls: the api-server's access log lines under `/execution/` while "
            "the variant ran, over the renders running (prepare/deploy included for ours).",
            f"- {load_note}",
            "",
        ]
    )
