"""B5: seconds per video, local backend through Airflow vs the CLI's own `--batch`.

The question a user asks before adopting the Airflow path on one machine: how much does a real
Airflow stack (a worker launch per row, pool scheduling, the manifest) cost per video compared
with `hyperframes render --batch`, which renders the same rows in one Node process? All runs
happen here, one after the other, on the same rows and the same toolchain environment, so the
ratios are comparable even though the absolute times depend on the machine:

1. single renders through `render_local` (the code path our operator runs), for the "ideal":
   rows x single-render seconds / concurrency;
2. the CLI's batch exactly as a user would run it (CLI default render flags);
3. the CLI's batch with the per-render flags our backend uses (`--workers 1 --no-browser-gpu
   --fps 30 --strict-variables`): the apples-to-apples baseline;
4. our DAG (`tests/stack_test_dags/hf_stack_local.py`) on a real stack with a pool of
   `concurrency` slots: makespan from the first render task's start to the manifest, and from
   the trigger to the run's end (stack start-up is reported, not included).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.airflow_stack import (
    LOCAL_DAG_ID,
    RENDER_POOL,
    RENDER_TASK_ID,
    STACK_DAGS,
    AirflowStack,
    manifest_path,
    sample_rows,
    template_variant,
    write_batch,
)
from hyperframes_airflow.backends.local_cli import (
    MARKER_ENV,
    Toolchain,
    find_toolchain,
    kill_process_group,
    render_local,
)

SECTION_ID = "B5"
OUR_RENDER_FLAGS: tuple[str, ...] = (
    "--workers",
    "1",
    "--no-browser-gpu",
    "--fps",
    "30",
    "--strict-variables",
)
"""What `render_local` passes per render (besides output/format/variables-file)."""


@dataclass
class CliBatchResult:
    label: str
    argv_tail: list[str]
    wall_s: float
    returncode: int
    completed: int
    row_render_s: list[float]


@dataclass
class StackResult:
    startup_s: dict[str, float]
    run_state: str
    trigger_to_end_s: float
    first_render_to_manifest_s: float
    render_task_s: list[float]
    peak_running: int
    manifest_statuses: dict[str, int]
    task_s: dict[str, float] = field(default_factory=dict)


@dataclass
class B5Result:
    rows: int
    concurrency: int
    started_at: str
    machine: dict[str, str]
    versions: dict[str, str]
    single_render_s: list[float]
    cli_batches: list[CliBatchResult]
    stack: StackResult
    order: list[str]


def run(rows: int = 10, concurrency: int = 2, singles: int = 3, keep: bool = False) -> B5Result:
    """Measure everything once, in a private work directory (removed unless `keep`)."""
    toolchain = find_toolchain()
    problems = toolchain.problems()
    if problems:
        raise SystemExit(f"local renderer not ready: {problems}")
    work = Path(tempfile.mkdtemp(prefix="hf-bench-b5-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"[b5] work dir {work}", flush=True)
    try:
        batch_rows = sample_rows(rows, prefix="bench")
        order: list[str] = []

        order.append(f"{singles} single renders")
        single = _single_renders(toolchain, work / "single", batch_rows, singles)
        print(f"[b5] single renders: {single}", flush=True)

        cli: list[CliBatchResult] = []
        for label, flags in (
            ("CLI --batch, CLI default flags", ()),
            ("CLI --batch, our render flags", OUR_RENDER_FLAGS),
        ):
            order.append(label)
            res = _cli_batch(toolchain, work / f"cli-{len(cli)}", batch_rows, concurrency, flags)
            res.label = label
            print(f"[b5] {label}: {res.wall_s:.1f} s, {res.completed} completed", flush=True)
            cli.append(res)

        order.append("Airflow DAG on the real stack")
        stack = _stack_run(work / "stack", batch_rows, concurrency)
        print(f"[b5] stack: {asdict(stack)}", flush=True)
        return B5Result(
            rows=rows,
            concurrency=concurrency,
            started_at=started_at,
            machine=machine_info(),
            versions=_versions(toolchain),
            single_render_s=single,
            cli_batches=cli,
            stack=stack,
            order=order,
        )
    finally:
        if keep:
            print(f"[b5] kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


# -- the measurements ----------------------------------------------------------------------------


def _single_renders(
    toolchain: Toolchain, work: Path, rows: list[dict[str, Any]], count: int
) -> list[float]:
    """Wall seconds of `render_local` alone, one at a time (the first one warms caches)."""
    project = template_variant(work / "template")
    seconds: list[float] = []
    for i in range(count):
        row = rows[i % len(rows)]
        t0 = time.monotonic()
        render_local(
            toolchain=toolchain,
            project_dir=project,
            output_path=work / "out" / f"{i}.mp4",
            variables=row["variables"],
            fps=30,
            quality=None,
            timeout_s=600,
        )
        seconds.append(round(time.monotonic() - t0, 2))
    return seconds


def _cli_batch(
    toolchain: Toolchain,
    work: Path,
    rows: list[dict[str, Any]],
    concurrency: int,
    flags: tuple[str, ...],
) -> CliBatchResult:
    """`hyperframes render <template> --batch rows.json --batch-concurrency N`, same env."""
    project = template_variant(work / "template")
    rows_file = work / "rows.json"
    rows_file.write_text(json.dumps([r["variables"] for r in rows]), encoding="utf-8")
    out = work / "out"
    tail = [
        "render",
        str(project),
        "--batch",
        str(rows_file),
        "--batch-concurrency",
        str(concurrency),
        "--output",
        str(out / "{index}.mp4"),
        *flags,
    ]
    env = toolchain.env()
    marker = uuid.uuid4().hex
    env[MARKER_ENV] = marker  # so an interrupted benchmark can still kill the detached Chrome
    log = work / "cli.log"
    t0 = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            toolchain.command() + tail,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=3600)
        finally:
            if proc.poll() is None:
                kill_process_group(proc.pid, marker=marker)
    wall = time.monotonic() - t0
    manifest = (
        json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    )
    done = [r for r in manifest.get("rows", []) if r.get("status") == "completed"]
    return CliBatchResult(
        label="",
        argv_tail=["render", "<template>", *tail[2:6], "--output", "out/{index}.mp4", *flags],
        wall_s=round(wall, 2),
        returncode=returncode,
        completed=len(done),
        row_render_s=[round(r["renderTimeMs"] / 1000, 2) for r in done if r.get("renderTimeMs")],
    )


def _stack_run(work: Path, rows: list[dict[str, Any]], concurrency: int) -> StackResult:
    """One run of our DAG on a fresh stack, with a pool of `concurrency` slots."""
    project = template_variant(work / "template")
    batch = write_batch(work / "rows.jsonl", rows)
    root = work / "root"
    env = {"HF_STACK_MAX_CONCURRENT": str(concurrency)}
    with AirflowStack(work / "home", STACK_DAGS, env=env) as stack:
        stack.create_pool(RENDER_POOL, concurrency, include_deferred=True)
        stack.wait_for_dag(LOCAL_DAG_ID)
        stack.unpause(LOCAL_DAG_ID)
        triggered = datetime.now(UTC)
        run_id = stack.trigger(
            LOCAL_DAG_ID,
            {"batch": str(batch), "project_dir": str(project), "local_root": str(root)},
        )
        peak = 0
        deadline = time.monotonic() + 3600
        while True:
            renders = stack.task_instances(LOCAL_DAG_ID, run_id, RENDER_TASK_ID)
            peak = max(peak, sum(ti.state == "running" for ti in renders))
            run = stack.dag_run(LOCAL_DAG_ID, run_id)
            if run["state"] in ("success", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        tis = stack.task_instances(LOCAL_DAG_ID, run_id)
        startup = dict(stack.startup_seconds)
    ended = _parse(run.get("end_date")) or datetime.now(UTC)
    renders = [ti for ti in tis if ti.task_id == RENDER_TASK_ID]
    starts = [ti.start_date for ti in renders if ti.start_date]
    manifest_file = manifest_path(root, LOCAL_DAG_ID, run_id)
    manifest: dict[str, Any] = (
        json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    )
    manifest_at = (
        datetime.fromtimestamp(manifest_file.stat().st_mtime, UTC)
        if manifest_file.is_file()
        else ended
    )
    statuses: dict[str, int] = {}
    for row in manifest.get("rows", []):
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    per_task = {
        ti.task_id.split(".")[-1]: round((ti.end_date - ti.start_date).total_seconds(), 2)
        for ti in tis
        if ti.task_id != RENDER_TASK_ID and ti.start_date and ti.end_date
    }
    return StackResult(
        startup_s=startup,
        run_state=str(run["state"]),
        trigger_to_end_s=round((ended - triggered).total_seconds(), 2),
        first_render_to_manifest_s=round((manifest_at - min(starts)).total_seconds(), 2)
        if starts
        else float("nan"),
        render_task_s=[
            round((ti.end_date - ti.start_date).total_seconds(), 2)
            for ti in renders
            if ti.start_date and ti.end_date
        ],
        peak_running=peak,
        manifest_statuses=statuses,
        task_s=per_task,
    )


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


# -- the report ----------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """nproc, RAM, CPU model, OS: the context every absolute number depends on."""
    cpu = platform.processor() or "unknown"
    ram = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "ram": ram,
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _versions(toolchain: Toolchain) -> dict[str, str]:
    from importlib.metadata import version

    node = ".".join(map(str, toolchain.node_version)) if toolchain.node_version else "?"
    chromium = "?"
    if toolchain.chromium is not None:
        try:
            out = subprocess.run(
                [str(toolchain.chromium), "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
            match = re.search(r"[\d.]{5,}", out)
            chromium = match[0] if match else out.strip()[:40]
        except (OSError, subprocess.SubprocessError):
            pass
    return {
        "apache-airflow": version("apache-airflow"),
        "hyperframes CLI": toolchain.cli_version or "?",
        "node": node,
        "chromium": chromium,
    }


def to_markdown(result: B5Result, *, command: str) -> str:
    """The section for docs/benchmarks.md: setup, then ratios side by side."""
    n, c = result.rows, result.concurrency
    single = statistics.median(result.single_render_s)
    ideal = n * single / c
    cli_default, cli_ours = result.cli_batches
    st = result.stack

    def line(label: str, makespan: float, note: str = "") -> str:
        per = makespan / n
        return (
            f"| {label} | {makespan:.1f} | {per:.2f} | {makespan / ideal:.2f} "
            f"| {makespan / cli_ours.wall_s:.2f} | {note} |"
        )

    m, v = result.machine, result.versions
    render_tasks = st.render_task_s or [float("nan")]
    lines = [
        f"## {SECTION_ID}: local throughput, Airflow DAG vs `hyperframes render --batch`",
        "",
        f"Measured {result.started_at} with `{command}`.",
        "",
        f"Machine: {m['nproc']} CPUs (`nproc`), {m['ram']} RAM, {m['cpu']}, {m['os']}, "
        f"Python {m['python']}. Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        f"Workload: {n} rows of `examples/templates/welcome` (2 s, 640x360, 30 fps = 60 frames), "
        f"concurrency {c} everywhere (pool slots / `--batch-concurrency`). Runs, in order: "
        + "; ".join(result.order)
        + ". Nothing is asserted; absolute times are noisy, read the ratios.",
        "",
        "| approach | makespan (s) | s / video | x ideal | x CLI batch (our flags) | notes |",
        "|---|---|---|---|---|---|",
        line(
            "ideal: rows x single render / concurrency",
            ideal,
            f"single render median {single:.2f} s (runs: {result.single_render_s})",
        ),
        line(
            "`render --batch`, CLI default flags",
            cli_default.wall_s,
            f"{cli_default.completed}/{n} completed; per-row renderTime median "
            f"{_median(cli_default.row_render_s):.2f} s",
        ),
        line(
            "`render --batch` + our flags",
            cli_ours.wall_s,
            f"{cli_ours.completed}/{n} completed; per-row renderTime median "
            f"{_median(cli_ours.row_render_s):.2f} s; flags `{' '.join(OUR_RENDER_FLAGS)}`",
        ),
        line(
            "Airflow DAG: first render start -> manifest",
            st.first_render_to_manifest_s,
            f"run {st.run_state}; manifest {st.manifest_statuses}; peak running renders "
            f"{st.peak_running}",
        ),
        line(
            "Airflow DAG: trigger -> run end",
            st.trigger_to_end_s,
            "includes prepare_batch, deploy_site, collect_manifest and scheduling",
        ),
        "",
        f"- Render task instances on the stack: median {_median(render_tasks):.2f} s "
        f"(min {min(render_tasks):.2f}, max {max(render_tasks):.2f}) from start to end, vs "
        f"{single:.2f} s for a lone `render_local`; the difference is the worker launch "
        "(fork, DAG parse, Execution API calls) plus two renders sharing the CPUs.",
        f"- Airflow's cost per video over the CLI batch with our flags: "
        f"{(st.first_render_to_manifest_s - cli_ours.wall_s) / n:.2f} s in the render phase, "
        f"{(st.trigger_to_end_s - cli_ours.wall_s) / n:.2f} s from trigger to run end.",
        f"- Other tasks: {', '.join(f'{k} {val:.2f} s' for k, val in st.task_s.items())}.",
        f"- Stack start-up (not in the makespans): {st.startup_s.get('total')} s "
        f"(`db migrate` {st.startup_s.get('db_migrate')} s, components healthy "
        f"{st.startup_s.get('components_healthy')} s).",
        "- The CLI batch renders every row inside one Node process (no per-row process start) but "
        "still launches Chrome per row; the DAG pays a task launch per row and gains per-row "
        "retries, cancellation, a pool shared across runs and the manifest.",
        "",
    ]
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_section(path: Path, section_id: str, body: str) -> None:
    """Replace this benchmark's section in the markdown file (between markers), or append it,
    so each benchmark owns its section and others are left alone."""
    start, end = f"<!-- {section_id}:start -->", f"<!-- {section_id}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text:
        text = (
            "# Benchmarks\n\n"
            "Each section is written by `uv run python -m benchmarks <name>`. Every number in a "
            "section comes from one run on the machine it names; compare the ratios, not the "
            "absolute times.\n\n"
        )
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
