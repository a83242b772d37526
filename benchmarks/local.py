"""B5: seconds per video on the local backend, per row and in lanes, vs `hyperframes render
--batch` with the same flags, and Airflow's floor at the same pace.

N rows of `examples/templates/welcome` (2 s, 640x360, 30 fps), concurrency C everywhere:

- CLI: `hyperframes render <template> --batch rows.json --batch-concurrency C --output
  out/{index}.mp4 --workers 1 --no-browser-gpu --fps 30` (the flags our backend passes): one
  Node process for the whole batch;
- per row: `hf_bench_local`, one render task per row (one `hyperframes render` each), pool C;
- lanes: `hf_bench_local_lanes`, rows_per_task = N / C: C render tasks, each one
  `hyperframes render --batch` process rendering its rows back to back;
- floor: `hf_bench_floor` with N tasks whose trigger sleeps as long as one CLI render took
  (the CLI's wall x C / N), pool C: what Airflow's scheduling alone costs at this pace.

The three Airflow variants run one after the other on one real stack. s/video = makespan / N.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._support import (
    Table,
    bench_stack,
    fmt,
    machine_line,
    median,
    package_snapshot,
    parse_ms,
    task_logs,
)
from devstack.airflow_stack import (
    AirflowStack,
    parse_time,
    sample_rows,
    template_variant,
    write_batch,
)
from hyperframes_airflow.backends.local_cli import MARKER_ENV, find_toolchain, kill_process_group

SECTION_ID = "B5"
FLAGS = ("--workers", "1", "--no-browser-gpu", "--fps", "30")
POOL = "bench_local"


@dataclass
class Variant:
    database: str
    name: str
    state: str
    makespan_s: float
    trigger_to_end_s: float
    statuses: dict[str, int] = field(default_factory=dict)
    parse_ms_median: float | None = None
    tasks: int = 0


@dataclass
class B5Result:
    rows: int
    concurrency: int
    databases: list[str]
    started_at: str
    code: str
    cli_wall_s: float
    cli_completed: int
    variants: list[Variant]


def run(
    rows: int = 10,
    concurrency: int = 2,
    databases: tuple[str, ...] = ("postgres", "sqlite"),
    keep: bool = False,
) -> B5Result:
    toolchain = find_toolchain()
    problems = toolchain.problems()
    if problems:
        raise SystemExit(f"local renderer not ready: {problems}")
    work = Path(tempfile.mkdtemp(prefix="hf-bench-b5-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    snapshot = package_snapshot(work)
    batch_rows = sample_rows(rows, prefix="bench")
    try:
        cli_wall, completed = _cli(toolchain, work / "cli", batch_rows, concurrency)
        print(f"[b5] CLI: {cli_wall:.1f} s, {completed} completed", flush=True)
        per_render = cli_wall * concurrency / rows
        env = {
            **snapshot.env(),
            "HF_BENCH_LOCAL_POOL": POOL,
            "HF_BENCH_LOCAL_ROWS_PER_TASK": str(max(1, rows // concurrency)),
            "HF_BENCH_FLOOR_POOL": POOL,
        }
        project = template_variant(work / "template")
        batch = write_batch(work / "rows.jsonl", batch_rows)
        variants: list[Variant] = []
        for database in databases:
            variants += _stack_variants(
                work / database,
                database,
                snapshot.dags,
                env,
                project,
                batch,
                rows,
                concurrency,
                per_render,
            )
        return B5Result(
            rows,
            concurrency,
            list(databases),
            started_at,
            snapshot.label,
            round(cli_wall, 2),
            completed,
            variants,
        )
    finally:
        if keep:
            print(f"[b5] kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _stack_variants(
    work: Path,
    database: str,
    dags: Path,
    env: dict[str, str],
    project: Path,
    batch: Path,
    rows: int,
    concurrency: int,
    per_render: float,
) -> list[Variant]:
    """The floor, per row and lanes on one fresh stack on `database`."""
    variants: list[Variant] = []
    with bench_stack(database, work / "home", dags, env) as (st, _pg):
        st.create_pool(POOL, concurrency, include_deferred=True)
        for dag_id in ("hf_bench_floor", "hf_bench_local", "hf_bench_local_lanes"):
            st.wait_for_dag(dag_id)
            st.unpause(dag_id)
        # Warm-up: one row through the per-row DAG (the first render warms caches).
        warm = write_batch(work / "warm.jsonl", sample_rows(1, prefix="warm"))
        _stack_run(
            st,
            "hf_bench_local",
            {
                "batch": str(warm),
                "project_dir": str(project),
                "local_root": str(work / "warm-root"),
            },
        )
        variants.append(
            _stack_run(
                st,
                "hf_bench_floor",
                {"rows": rows, "seconds": round(per_render, 2)},
                name=f"Airflow's floor (trigger sleeps {per_render:.2f} s)",
                task_id="render",
            )
        )
        for dag_id, name in (
            ("hf_bench_local", "per row"),
            ("hf_bench_local_lanes", f"lanes of {max(1, rows // concurrency)} rows"),
        ):
            variants.append(
                _stack_run(
                    st,
                    dag_id,
                    {
                        "batch": str(batch),
                        "project_dir": str(project),
                        "local_root": str(work / f"root-{dag_id}"),
                    },
                    name=name,
                )
            )
            print(f"[b5] {variants[-1]}", flush=True)
    for v in variants:
        v.database = database
    return variants


def _cli(
    toolchain: Any, work: Path, rows: list[dict[str, Any]], concurrency: int
) -> tuple[float, int]:
    project = template_variant(work / "template")
    rows_file = work / "rows.json"
    rows_file.write_text(json.dumps([r["variables"] for r in rows]), encoding="utf-8")
    out = work / "out"
    argv = [
        *toolchain.command(),
        "render",
        str(project),
        "--batch",
        str(rows_file),
        "--batch-concurrency",
        str(concurrency),
        "--output",
        str(out / "{index}.mp4"),
        *FLAGS,
    ]
    env = toolchain.env()
    marker = uuid.uuid4().hex
    env[MARKER_ENV] = marker
    t0 = time.monotonic()
    with (work / "cli.log").open("wb") as fh:
        proc = subprocess.Popen(
            argv,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=3600)
        finally:
            if proc.poll() is None:
                kill_process_group(proc.pid, marker=marker)
    wall = time.monotonic() - t0
    done = len(list(out.glob("*.mp4")))
    return wall, done


def _stack_run(
    st: AirflowStack,
    dag_id: str,
    conf: dict[str, Any],
    *,
    name: str = "",
    task_id: str = "render_batch.render",
) -> Variant:
    triggered = datetime.now(UTC)
    run_id = st.trigger(dag_id, conf)
    state = st.wait_for_run(dag_id, run_id, timeout=3600, poll_s=0.5)
    run = st.dag_run(dag_id, run_id)
    ended = parse_time(run.get("end_date")) or datetime.now(UTC)
    renders = [ti for ti in st.task_instances(dag_id, run_id) if ti.task_id == task_id]
    starts = [ti.start_date for ti in renders if ti.start_date]
    stops = [ti.end_date for ti in renders if ti.end_date]
    span = (max(stops) - min(starts)).total_seconds() if starts and stops else float("nan")
    states: dict[str, int] = {}
    for ti in renders:
        states[str(ti.state)] = states.get(str(ti.state), 0) + 1
    return Variant(
        "",
        name or dag_id,
        state,
        round(span, 2),
        round((ended - triggered).total_seconds(), 2),
        states,
        round(median(parse_ms(task_logs(st, dag_id, run_id, task_id))), 1),
        len(renders),
    )


def to_markdown(result: B5Result, *, command: str, load_note: str) -> str:
    n = result.rows
    cli = result.cli_wall_s
    table = Table(
        [
            "database",
            "approach",
            "first render start -> last render end (s)",
            "s / video",
            "x `render --batch`",
            "trigger -> run end (s)",
            "render tasks",
            "median `dag_file_parse_ms`",
            "outcome",
        ]
    )
    table.add(
        "-",
        "`hyperframes render --batch` (same flags)",
        fmt(cli, 1),
        fmt(cli / n, 2),
        "1.00",
        "-",
        "-",
        "-",
        f"{result.cli_completed}/{n} MP4s",
    )
    for v in result.variants:
        table.add(
            "PostgreSQL" if v.database == "postgres" else "SQLite",
            v.name,
            fmt(v.makespan_s, 1),
            fmt(v.makespan_s / n, 2),
            fmt(v.makespan_s / cli, 2),
            fmt(v.trigger_to_end_s, 1),
            v.tasks,
            fmt(v.parse_ms_median, 0),
            f"{v.state} {v.statuses}",
        )
    db = " and ".join("PostgreSQL" if d == "postgres" else "SQLite" for d in result.databases)
    return "\n".join(
        [
            f"## {SECTION_ID}: local renders, per row and in lanes, vs "
            "`hyperframes render --batch`",
            "",
            f"Measured {result.started_at} with `{command}`.",
            "",
            f"Machine: {machine_line()}. Code: {result.code}. One real stack per database ({db}, "
            "LocalExecutor, a fresh one each), "
            f"pool of {result.concurrency} slots; {n} rows of `examples/templates/welcome` (2 s, "
            f"640x360, 30 fps); the CLI ran with `--batch-concurrency {result.concurrency} "
            f"{' '.join(FLAGS)}`, our backend passes the same render flags. Runs in order: the "
            "CLI, then per stack a 1-row warm-up, the floor, per row, lanes. Nothing is asserted.",
            "",
            table.render(),
            "",
            "- For the dispatch floor at scale (1,000 trivial deferring tasks, pool 1,000) see B4.",
            f"- {load_note}",
            "",
        ]
    )
