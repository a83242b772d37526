"""B4: time from "go" to all N executions started, ours vs bare boto3 vs the Node CLI.

Every variant starts the same N rows (variables matching `examples/templates/welcome` plus
`hfTestFate: "hang"`, so no execution ends while the others are being started) against its own
fresh moto server process (the same counting server, `execute_state_machine` on):

- bare boto3: a `ThreadPoolExecutor(16)` making N `start_execution` calls with one shared
  client: the most this machine and this moto server can do, with no validation, upload or
  bookkeeping at all;
- Node CLI: `hyperframes lambda render-batch --json` (default `--max-concurrent 50`, and 16 to
  match the thread pool), `AWS_ENDPOINT_URL` pointing at moto: parse, validate, upload the site
  once, then StartExecution per row;
- ours: the `hf_bench_ours` DAG (`render_batch`, backend lambda) on a real Airflow stack with a
  pool of N slots (`include_deferred`) and `max_concurrent=N`: trigger -> prepare_batch ->
  deploy_site -> N mapped render task instances, each a worker launch that checks for an
  existing execution, starts one and defers. Measured from the trigger to the N-th
  StartExecution counted by moto (polled twice a second), after a 2-row warm-up run.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import _node_cli
from benchmarks._aws import (
    BENCH_DAGS,
    OURS_DAG_ID,
    OURS_POOL,
    MotoWatch,
    jsonl,
    machine_line,
    package_snapshot,
    put_batch,
    sfn_calls,
    welcome_rows,
)
from devstack.airflow_stack import AirflowStack
from devstack.moto_stack import TEST_CREDENTIALS, MotoStack

SECTION_ID = "B4"
REPO = Path(__file__).resolve().parents[1]
WELCOME = REPO / "examples" / "templates" / "welcome"
MARKS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class DispatchResult:
    name: str
    started: int
    wall_s: float | None
    marks_s: dict[str, float] = field(default_factory=dict)
    sfn_calls: dict[str, int] = field(default_factory=dict)
    s3_calls: int = 0
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class B4Result:
    rows: int
    threads: int
    parallelism: int
    started_at: str
    node_versions: str | None
    variants: list[DispatchResult]


def run(
    rows: int = 1000,
    threads: int = 16,
    parallelism: int = 8,
    timeout: float = 900.0,
    node_dir: Path = _node_cli.DEFAULT_DIR,
    keep: bool = False,
) -> B4Result:
    work = Path(tempfile.mkdtemp(prefix="hf-bench-b4-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    variants: list[DispatchResult] = []
    try:
        res = _boto3(rows, threads)
        print(f"[b4] {res}", flush=True)
        variants.append(res)
        node = _node_cli.ensure(node_dir)
        for concurrency in (50, threads):
            if isinstance(node, str):
                res = DispatchResult(f"node --max-concurrent {concurrency}", 0, None, note=node)
            else:
                res = _node(node, work / f"node-{concurrency}", rows, concurrency)
            print(f"[b4] {res}", flush=True)
            variants.append(res)
        res = _ours(work / "ours", rows, parallelism, timeout)
        print(f"[b4] {res}", flush=True)
        variants.append(res)
        return B4Result(
            rows=rows,
            threads=threads,
            parallelism=parallelism,
            started_at=started_at,
            node_versions=None if isinstance(node, str) else node.versions,
            variants=variants,
        )
    finally:
        if keep:
            print(f"[b4] kept {work}")
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
    return DispatchResult(
        name=f"bare boto3, ThreadPoolExecutor({threads})",
        started=calls["states:StartExecution"],
        wall_s=round(wall, 2),
        marks_s=_marks([t - t0 for t in done_at], rows),
        sfn_calls=sfn_calls(calls),
        s3_calls=_s3(calls),
        note="start_execution only (input built beforehand, not timed)",
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
            work,
            bucket=moto.bucket,
            state_machine_arn=moto.state_machine_arn,
            region=moto.region,
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
    out = measured.stdout.read_bytes()
    started = len(re.findall(rb'"status":\s*"started"', out))
    note = f"rc={measured.returncode}, {started} rows reported started; includes CLI start-up"
    if measured.returncode != 0:
        note += f"; stderr: {measured.stderr_tail}"
    return DispatchResult(
        name=f"Node CLI `lambda render-batch --max-concurrent {concurrency}`",
        started=calls["states:StartExecution"],
        wall_s=measured.wall_s,
        sfn_calls=sfn_calls(calls),
        s3_calls=_s3(calls),
        note=note,
    )


def _ours(work: Path, rows: int, parallelism: int, timeout: float) -> DispatchResult:
    snapshot = package_snapshot(work)
    with MotoStack(count_calls=True) as moto:
        env = {
            **moto.airflow_conn_env(),
            **snapshot.env(),
            "HF_BENCH_OURS_POOL": OURS_POOL,
            "HF_BENCH_MAX_CONCURRENT": str(rows),
            "HF_BENCH_POLL_INTERVAL": "10",
        }
        with AirflowStack(work / "home", BENCH_DAGS, env=env, parallelism=parallelism) as st:
            print(f"[b4] stack up: {st.startup_seconds}", flush=True)
            st.create_pool(OURS_POOL, rows + 10, include_deferred=True)
            st.wait_for_dag(OURS_DAG_ID)
            st.unpause(OURS_DAG_ID)
            warm = put_batch(moto, "bench/b4-warmup.jsonl", welcome_rows(2, "bench/b4-warm"))
            warm_id = st.trigger(OURS_DAG_ID, {"batch": warm})
            print(f"[b4] warm-up: {st.wait_for_run(OURS_DAG_ID, warm_id, timeout=300)}")
            batch = put_batch(
                moto, "bench/b4-ours.jsonl", welcome_rows(rows, "bench/b4-ours", hfTestFate="hang")
            )
            watch = MotoWatch(moto)
            watch.reset()
            t0 = time.monotonic()
            run_id = st.trigger(OURS_DAG_ID, {"batch": batch})
            seen: list[tuple[float, int]] = []
            count = 0
            while count < rows and time.monotonic() - t0 < timeout:
                time.sleep(0.5)
                count = watch.server_calls()["states:StartExecution"]
                seen.append((time.monotonic() - t0, count))
            elapsed = time.monotonic() - t0
            wall = elapsed if count >= rows else None
            calls = watch.server_calls()
            tasks = {}
            for task_id in ("render_batch.prepare_batch", "render_batch.deploy_site"):
                for ti in st.task_instances(OURS_DAG_ID, run_id, task_id):
                    if ti.start_date and ti.end_date:
                        tasks[task_id.split(".")[-1]] = round(
                            (ti.end_date - ti.start_date).total_seconds(), 2
                        )
            startup = st.startup_seconds.get("total")
    marks: dict[str, float] = {}
    for frac in MARKS:
        need = max(1, int(rows * frac))
        hit = next((t for t, c in seen if c >= need), None)
        if hit is not None:
            marks[f"{int(frac * 100)}%"] = round(hit, 1)
    return DispatchResult(
        name=f"ours: `render_batch` DAG on the real stack (parallelism {parallelism})",
        started=count,
        wall_s=round(wall, 1) if wall is not None else None,
        marks_s=marks,
        sfn_calls=sfn_calls(calls),
        s3_calls=_s3(calls),
        note="trigger -> N-th StartExecution seen at moto (0.5 s polling)"
        + ("" if wall is not None else f"; only {count}/{rows} after {timeout:.0f} s"),
        detail={
            "task_s": tasks,
            "stack_startup_s": startup,
            "code": snapshot.label,
            "elapsed_s": round(elapsed, 1),
        },
    )


def _marks(offsets: list[float], rows: int) -> dict[str, float]:
    marks = {}
    for frac in MARKS:
        index = max(0, min(len(offsets), int(rows * frac)) - 1)
        if offsets:
            marks[f"{int(frac * 100)}%"] = round(offsets[index], 2)
    return marks


def _s3(calls: Any) -> int:
    return sum(v for k, v in calls.items() if k.startswith("s3:"))


# -- the report ----------------------------------------------------------------------------------


def to_markdown(result: B4Result, *, command: str) -> str:
    base = next((v for v in result.variants if v.name.startswith("bare boto3")), None)
    lines = [
        f"## {SECTION_ID}: dispatch, time until all {result.rows:,} executions are started",
        "",
        f"Measured {result.started_at} with `{command}`.",
        "",
        f"Machine: {machine_line()}. Node side: {result.node_versions or 'unavailable'}. "
        "Each variant gets its own fresh moto server process (counting calls, "
        "`execute_state_machine` on); every row's execution hangs, so nothing ends while the "
        "rest are being started. Nothing is asserted.",
        "",
        "| approach | started | wall to all started (s) | starts / s | x bare boto3 "
        "| first / 25% / 50% / 75% / 100% (s) | SFN calls per started row | S3 calls | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in result.variants:
        elapsed = v.wall_s or v.detail.get("elapsed_s")
        rate = f"{v.started / elapsed:.2f}" if elapsed else "n/a"
        base_rate = base.started / base.wall_s if base and base.wall_s else None
        if v.wall_s and base and base.wall_s:
            ratio = f"{v.wall_s / base.wall_s:.1f}"
        elif elapsed and v.started and base_rate:  # did not finish: compare the rates
            ratio = f">= {base_rate / (v.started / elapsed):.0f} (by rate)"
        else:
            ratio = "n/a"
        wall = f"{v.wall_s:g}" if v.wall_s is not None else f"not reached in {elapsed:g} s"
        marks = " / ".join(f"{s:g}" for s in v.marks_s.values()) or "n/a"
        per_row = ", ".join(f"{k} {c / max(v.started, 1):.2f}" for k, c in v.sfn_calls.items())
        lines.append(
            f"| {v.name} | {v.started:,} | {wall} | {rate} | {ratio} | {marks} "
            f"| {per_row or 'none'} | {v.s3_calls} | {v.note} |"
        )
    ours = next((v for v in result.variants if v.name.startswith("ours")), None)
    lines.append("")
    if ours and ours.detail:
        lines.append(
            f"- Ours ({ours.detail.get('code')}), other tasks: {ours.detail.get('task_s')}; "
            f"stack start-up (not in the wall time) {ours.detail.get('stack_startup_s')} s. "
            "Every render task instance is a worker launch (a fresh task process that loads "
            "the DAG file) on a "
            f"LocalExecutor with `parallelism={result.parallelism}`; that launch, not the "
            "StartExecution call, is the per-row cost."
        )
    if ours and len(ours.marks_s) > 2:
        points = [
            (t, max(1, int(result.rows * int(k.rstrip("%")) / 100)))
            for k, t in ours.marks_s.items()
        ]
        rates = [
            f"{(c1 - c0) / (t1 - t0):.2f}/s up to {c1}"
            for (t0, c0), (t1, c1) in itertools.pairwise(points)
            if t1 > t0
        ]
        lines.append(
            "- Ours, start rate by stretch (from the first start): "
            + ", ".join(rates)
            + ". When it falls, two things grow at once: every started row stays deferred "
            "(hanging), so the triggerer and the scheduler carry more each minute, and the "
            "machine's load average (see below); one run cannot tell them apart."
        )
        history = ours.sfn_calls.get("GetExecutionHistory")
        if history:
            lines.append(
                f"- Ours, GetExecutionHistory {history:,}: the triggers' progress reads for "
                "renders that are already running (default `progress_interval` 60 s, within "
                "the process-wide read budget), not part of starting them; "
                f"{history / (ours.wall_s or ours.detail.get('elapsed_s') or 1):.1f}/s overall."
            )
    if base:
        lines.append(
            f"- Bare boto3 at {base.started / (base.wall_s or 1):.0f}/s is moto's own ceiling "
            "here (with `execute_state_machine` every execution is a thread in the server); "
            "the Node CLI gets close to it. Both are far from what limits ours."
        )
    lines += [
        "- `[core] max_map_length` is 1,024 by default: above it `render_batch` gives each "
        "render task several consecutive rows, rendered one after the other, which is another "
        f"dispatch path; N={result.rows:,} keeps one row per task instance.",
        "",
    ]
    return "\n".join(lines)
