"""Running one render (or a lane of renders) with the CLI, in its own process group."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperframes_airflow.backends.local_cli.errors import (
    LocalRenderError,
    LocalRenderResult,
    LocalRenderTimeout,
    LocalToolchainError,
)
from hyperframes_airflow.backends.local_cli.media import probe_video
from hyperframes_airflow.backends.local_cli.output import (
    _MACHINE_PROGRESS,
    _RENDERED_IN,
    _WARNING,
    ProgressCallback,
    _ProgressState,
    clean_line,
    failure_message,
)
from hyperframes_airflow.backends.local_cli.processes import (
    MARKER_ENV,
    kill_process_group,
    marked_processes,
)
from hyperframes_airflow.backends.local_cli.toolchain import Toolchain, _problems_message

FILE_FORMATS: frozenset[str] = frozenset({"mp4", "webm", "mov", "gif"})
"""Formats that produce one file (png-sequence and hls write directories)."""

LOG_TAIL_LINES = 50
_MAX_LINE_CHARS = 1000

StartCallback = Callable[[int], None]

SCRATCH_ROOT = Path(tempfile.gettempdir()) / f"hf-scratch-{os.getuid()}"
"""Every render's private 0700 directory lives here, named `<owner>-<random>`: what a hard-killed
render leaves behind (its variables file, the CLI's compiled HTML, Chrome's profile) can then be
found and removed by the next start of the same owner, and by the manifest task."""


def scratch_dir(owner: str) -> Path:
    """A new private 0700 directory for one render (or lane) of `owner`."""
    SCRATCH_ROOT.mkdir(mode=0o700, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{owner}-", dir=SCRATCH_ROOT))


def reclaim(owner: str, *, grace_s: float = 2.0) -> int:
    """Kill what an earlier, hard-killed render of `owner` left running, and delete its private
    directories (variables and compiled HTML included). Returns how many directories went."""
    for pid in marked_processes(owner, prefix=True):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if grace_s:
        deadline = time.monotonic() + grace_s
        while marked_processes(owner, prefix=True) and time.monotonic() < deadline:
            time.sleep(0.05)
    removed = 0
    if SCRATCH_ROOT.is_dir():
        for leftover in SCRATCH_ROOT.glob(f"{owner}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    return removed


def build_render_args(
    *,
    project_dir: Path,
    output_path: Path,
    variables_file: Path,
    fps: int | None,
    quality: str | None,
    format: str,
    workers: int | None,
    browser_gpu: bool | None,
    strict_variables: bool,
    resolution: str | None,
) -> list[str]:
    """The `hyperframes render` arguments (after `[node, cli]`); never contains variable values."""
    args = [
        "render",
        str(project_dir),
        "--output",
        str(output_path),
        "--format",
        format,
        "--variables-file",
        str(variables_file),
    ]
    if strict_variables:
        args.append("--strict-variables")
    if fps is not None:
        args += ["--fps", str(fps)]
    if quality is not None:
        args += ["--quality", quality]
    if workers is not None:
        args += ["--workers", str(workers)]
    if browser_gpu is not None:
        args.append("--browser-gpu" if browser_gpu else "--no-browser-gpu")
    if resolution is not None:
        args += ["--resolution", resolution]
    return args


def snapshot_project(source: Path, target: Path) -> None:
    """Hard-link the project into `target` (copy across file systems), minus the CLI's own
    `.hyperframes/` state, so the render cannot write into the user's template."""

    def link_or_copy(src: str, dst: str) -> str:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return dst

    root = str(source)

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {".hyperframes", ".git"} & set(names) if directory == root else set()

    shutil.copytree(source, target, copy_function=link_or_copy, ignore=ignore)


def render_local(
    *,
    toolchain: Toolchain,
    project_dir: Path,
    output_path: Path,
    variables: Mapping[str, Any],
    fps: int | None,
    quality: str | None,
    format: str = "mp4",
    timeout_s: float | None,
    on_progress: ProgressCallback | None = None,
    on_start: StartCallback | None = None,
    workers: int | None = 1,
    browser_gpu: bool | None = False,
    strict_variables: bool = True,
    resolution: str | None = None,
    isolate_project: bool = True,
    progress_interval_s: float = 2.0,
    kill_grace_s: float = 10.0,
    owner: str | None = None,
) -> LocalRenderResult:
    """Render `project_dir` with `variables` to `output_path`; block until done.

    Defaults chosen by measurement on a 2-core box: `workers=1` skips the CLI's capture-speed
    calibration (a second Chrome launch) and `browser_gpu=False` skips the GPU probe; together
    they halve a 2 s render (~13.5 s -> ~7 s wall) with identical output. One render per task is
    also what the Airflow pool accounts for. `strict_variables` makes the CLI refuse undeclared or
    mistyped variables instead of rendering with defaults (we validate first; this is the backstop).

    `on_start(pid)` is called right after spawn: `pid` is the CLI's pid and process group id, to
    pass to `kill_process_group` from an `on_kill`. `on_progress` gets lines like
    `"31% Streaming frame 7/60"`, at most one per `progress_interval_s` (plus the final 100%).
    `owner` names the render for `reclaim` (default: a fresh random one).
    Raises `LocalRenderTimeout`, `LocalRenderError` or `LocalToolchainError`.
    """
    project_dir, fmt = _ready(toolchain, project_dir, format)
    payload = json.dumps(dict(variables), ensure_ascii=False, allow_nan=False)

    output_path = Path(output_path).resolve()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    owner = owner or uuid.uuid4().hex[:12]
    token = f"{owner}-{uuid.uuid4().hex}"
    partial = output_path.with_name(
        f".{output_path.stem}.partial-{token[-12:]}{output_path.suffix}"
    )
    private = scratch_dir(owner)
    proc: subprocess.Popen[bytes] | None = None
    try:
        variables_file = private / "variables.json"
        fd = os.open(variables_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
        render_dir = project_dir
        if isolate_project:
            render_dir = private / "project"
            snapshot_project(project_dir, render_dir)
        argv = toolchain.command() + build_render_args(
            project_dir=render_dir,
            output_path=partial,
            variables_file=variables_file,
            fps=fps,
            quality=quality,
            format=fmt,
            workers=workers,
            browser_gpu=browser_gpu,
            strict_variables=strict_variables,
            resolution=resolution,
        )
        env = _render_env(toolchain, private, token)

        started = time.monotonic()
        proc = _spawn(argv, env, private, on_start)
        outcome = _pump(
            proc,
            started=started,
            timeout_s=timeout_s,
            progress=_ProgressState(on_progress, progress_interval_s),
            kill_grace_s=kill_grace_s,
            marker=token,
        )
        elapsed = time.monotonic() - started

        if outcome.timed_out:
            raise LocalRenderTimeout(
                f"Render did not finish within {timeout_s:g} s; its process tree was killed",
                timeout_s=float(timeout_s or 0),
                log_tail=outcome.tail,
            )
        if proc.returncode != 0:
            raise LocalRenderError(
                failure_message(outcome.lines, proc.returncode),
                returncode=proc.returncode,
                log_tail=outcome.tail,
            )
        if not partial.is_file() or partial.stat().st_size == 0:
            raise LocalRenderError(
                "hyperframes render exited 0 but wrote no output",
                returncode=0,
                log_tail=outcome.tail,
            )
        os.replace(partial, output_path)
        if on_progress is not None:
            outcome.progress.finish()
        info = probe_video(output_path, ffprobe=toolchain.ffprobe)
        frames = info.get("nb_frames") or outcome.progress.frames_total
        return LocalRenderResult(
            output_path=output_path,
            bytes=output_path.stat().st_size,
            frames=frames,
            duration_s=info.get("duration"),
            render_seconds=round(elapsed, 3),
            width=info.get("width"),
            height=info.get("height"),
            codec=info.get("codec_name"),
            cli_render_seconds=outcome.cli_render_seconds,
            warnings=tuple(dict.fromkeys(outcome.warnings)),
        )
    finally:
        if proc is not None and proc.poll() is None:  # interrupted (e.g. task killed): no orphans
            kill_process_group(proc.pid, grace_s=kill_grace_s, marker=token)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        shutil.rmtree(private, ignore_errors=True)


def _spawn(
    argv: list[str], env: dict[str, str], private: Path, on_start: StartCallback | None
) -> subprocess.Popen[bytes]:
    """Start the CLI in its own session (one kill reaches its group), output on one pipe (so
    "Variable ..." and "✗ ..." stay in order), then tell `on_start` its pid."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=private,
        env=env,
        start_new_session=True,
    )
    if on_start is not None:
        on_start(proc.pid)
    return proc


def _ready(toolchain: Toolchain, project_dir: Path, format: str) -> tuple[Path, str]:
    """The project's resolved path and the format, once the toolchain and both are checked."""
    fmt = format.lower()
    if fmt not in FILE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(sorted(FILE_FORMATS))}; got {format!r}")
    problems = toolchain.problems()
    if problems:
        raise LocalToolchainError(_problems_message(problems))
    resolved = Path(project_dir).resolve()
    if not resolved.is_dir():
        raise LocalRenderError(f"Project directory not found: {resolved}")
    return resolved, fmt


def _render_env(toolchain: Toolchain, private: Path, token: str) -> dict[str, str]:
    """The CLI's environment: its render cookie, and every temp file inside `private`."""
    for sub in ("history", "tmp"):
        (private / sub).mkdir(exist_ok=True)
    env = toolchain.env()
    env[MARKER_ENV] = token
    env["HYPERFRAMES_HISTORY_ROOT"] = str(private / "history")
    env["TMPDIR"] = str(private / "tmp")  # compiled HTML, Chrome profiles: gone with private
    return env


@dataclass
class _Outcome:
    progress: _ProgressState
    lines: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timed_out: bool = False
    cli_render_seconds: float | None = None


_EOF = object()


def _pump(
    proc: subprocess.Popen[bytes],
    *,
    started: float,
    timeout_s: float | None,
    progress: _ProgressState,
    kill_grace_s: float,
    marker: str,
    tick: Callable[[str | None], bool] | None = None,
) -> _Outcome:
    """Read the CLI's output until it exits or the deadline passes; callbacks run on this thread.

    `tick(line)` is called for every output line and about four times a second (line None);
    returning True kills the render tree now (a lane's row ran past its own deadline).
    """
    assert proc.stdout is not None
    lines_q: queue.Queue[object] = queue.Queue()
    stdout = proc.stdout

    def reader() -> None:
        try:
            for raw in iter(stdout.readline, b""):
                lines_q.put(raw.decode("utf-8", errors="replace"))
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stdout.close()
            lines_q.put(_EOF)

    threading.Thread(target=reader, name=f"hf-render-{proc.pid}", daemon=True).start()
    outcome = _Outcome(progress=progress)
    # Keep only meaningful text for failure parsing: the engine's JSON trace lines are large.
    meaningful: deque[str] = deque(maxlen=400)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    deadline = None if timeout_s is None else started + timeout_s
    eof = False
    exited_at: float | None = None

    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline and proc.poll() is None:
            outcome.timed_out = True
            kill_process_group(proc.pid, grace_s=kill_grace_s, marker=marker)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            break
        if eof and proc.poll() is not None:
            break
        if proc.poll() is not None:
            exited_at = exited_at or now
            if now - exited_at > 3.0:  # a grandchild still holds the pipe; do not wait for it
                break
        wait = 0.25 if deadline is None else max(0.01, min(0.25, deadline - now))
        try:
            item = lines_q.get(timeout=wait)
        except queue.Empty:
            if tick is not None and proc.poll() is None and tick(None):
                outcome.timed_out = True
                kill_process_group(proc.pid, grace_s=kill_grace_s, marker=marker)
                break
            continue
        if item is _EOF:
            eof = True
            continue
        line = clean_line(str(item))
        if not line.strip():
            continue
        if tick is not None and tick(line) and proc.poll() is None:
            outcome.timed_out = True
            kill_process_group(proc.pid, grace_s=kill_grace_s, marker=marker)
            break
        progress.feed(line)
        if line.startswith(_MACHINE_PROGRESS):
            continue
        tail.append(line[:_MAX_LINE_CHARS])
        if not line.startswith("[INFO]") and "Render:trace" not in line:
            meaningful.append(line[:_MAX_LINE_CHARS])
        if (m := _RENDERED_IN.search(line)) is not None:
            with contextlib.suppress(ValueError):
                outcome.cli_render_seconds = float(m[1])
        if (w := _WARNING.match(line)) is not None:
            outcome.warnings.append(w[1].strip())

    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    # Anything the tree left behind (Chrome is in its own session) goes with it.
    for straggler in marked_processes(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(straggler, signal.SIGKILL)
    outcome.lines = list(meaningful)
    outcome.tail = list(tail)
    return outcome


# --------------------------------------------------------------------------------------------
# A lane: several rows back to back in one CLI process (`hyperframes render --batch`)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaneItem:
    """One row of a lane: its variables and where its output must end up."""

    variables: Mapping[str, Any]
    output_path: Path


@dataclass(frozen=True)
class LaneOutcome:
    """How one row of a lane ended: a result, or the error that stopped it."""

    index: int
    result: LocalRenderResult | None = None
    error: LocalRenderError | None = None


RowStartCallback = Callable[[int], None]
RowDoneCallback = Callable[[LaneOutcome], None]
RowProgressCallback = Callable[[int, str], None]

_BATCH_ROW = re.compile(r"^Batch row (\d+): ")
_STATUS_POLL_S = 0.25


def render_local_lane(
    *,
    toolchain: Toolchain,
    project_dir: Path,
    items: list[LaneItem],
    fps: int | None,
    quality: str | None,
    format: str = "mp4",
    timeout_per_row_s: float | None,
    on_row_start: RowStartCallback | None = None,
    on_row_done: RowDoneCallback | None = None,
    on_progress: RowProgressCallback | None = None,
    on_start: StartCallback | None = None,
    workers: int | None = 1,
    browser_gpu: bool | None = False,
    progress_interval_s: float = 2.0,
    kill_grace_s: float = 10.0,
    owner: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[LaneOutcome]:
    """Render `items` one after the other in one `hyperframes render --batch` process.

    The CLI loads, lints and finds its browser once for the lane instead of once per row. Rows
    are told apart by the CLI's own per-row manifest (`manifest.json`, rewritten at every row
    state change) and its `Batch row N:` lines; each finished row's file is moved into place
    at once (atomically) and probed, and `on_row_done` hears of it before the next row ends. A
    row that runs past `timeout_per_row_s` is killed with its process tree and recorded as
    timed out; the rows after it go on in a fresh CLI process. `should_stop()` True (a killed
    task) stops the lane: the rows not rendered get no outcome.
    """
    project_dir, fmt = _ready(toolchain, project_dir, format)
    owner = owner or uuid.uuid4().hex[:12]
    outcomes: dict[int, LaneOutcome] = {}

    def record(outcome: LaneOutcome) -> None:
        outcomes[outcome.index] = outcome
        if on_row_done is not None:
            on_row_done(outcome)

    remaining = list(range(len(items)))
    while remaining and not should_stop():
        before = len(outcomes)
        _run_lane_process(
            toolchain=toolchain,
            project_dir=project_dir,
            items=items,
            indexes=remaining,
            fps=fps,
            quality=quality,
            fmt=fmt,
            timeout_per_row_s=timeout_per_row_s,
            record=record,
            on_row_start=on_row_start,
            on_progress=on_progress,
            on_start=on_start,
            workers=workers,
            browser_gpu=browser_gpu,
            progress_interval_s=progress_interval_s,
            kill_grace_s=kill_grace_s,
            owner=owner,
            should_stop=should_stop,
        )
        remaining = [i for i in remaining if i not in outcomes]
        if len(outcomes) == before:  # the process ended without finishing any row: give up
            break
    return [outcomes[i] for i in sorted(outcomes)]


def _run_lane_process(
    *,
    toolchain: Toolchain,
    project_dir: Path,
    items: list[LaneItem],
    indexes: list[int],
    fps: int | None,
    quality: str | None,
    fmt: str,
    timeout_per_row_s: float | None,
    record: Callable[[LaneOutcome], None],
    on_row_start: RowStartCallback | None,
    on_progress: RowProgressCallback | None,
    on_start: StartCallback | None,
    workers: int | None,
    browser_gpu: bool | None,
    progress_interval_s: float,
    kill_grace_s: float,
    owner: str,
    should_stop: Callable[[], bool],
) -> None:
    """One CLI process over `indexes` (positions in `items`); records each row it settles."""
    token = f"{owner}-{uuid.uuid4().hex}"
    private = scratch_dir(owner)
    proc: subprocess.Popen[bytes] | None = None
    try:
        batch_file = private / "batch.json"
        fd = os.open(batch_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(
                [dict(items[i].variables) for i in indexes], fh, ensure_ascii=False, allow_nan=False
            )
        render_dir = private / "project"
        snapshot_project(project_dir, render_dir)
        out_dir = private / "out"
        out_dir.mkdir()
        argv = [
            *toolchain.command(),
            "render",
            str(render_dir),
            "--batch",
            str(batch_file),
            "--output",
            str(out_dir / f"{{index}}.{fmt}"),
            "--format",
            fmt,
            "--batch-concurrency",
            "1",
        ]
        if fps is not None:
            argv += ["--fps", str(fps)]
        if quality is not None:
            argv += ["--quality", quality]
        if workers is not None:
            argv += ["--workers", str(workers)]
        if browser_gpu is not None:
            argv.append("--browser-gpu" if browser_gpu else "--no-browser-gpu")
        env = _render_env(toolchain, private, token)
        lane = _LaneState(
            items=items,
            indexes=indexes,
            out_dir=out_dir,
            fmt=fmt,
            toolchain=toolchain,
            record=record,
            on_row_start=on_row_start,
            on_progress=on_progress,
            progress_interval_s=progress_interval_s,
            timeout_per_row_s=timeout_per_row_s,
            should_stop=should_stop,
        )
        started = time.monotonic()
        proc = _spawn(argv, env, private, on_start)
        outcome = _pump(
            proc,
            started=started,
            timeout_s=None,
            progress=_ProgressState(None, progress_interval_s),
            kill_grace_s=kill_grace_s,
            marker=token,
            tick=lane.tick,
        )
        lane.poll_manifest()  # the last row's final state
        lane.settle_current(outcome, proc.returncode)
    finally:
        if proc is not None and proc.poll() is None:  # interrupted (e.g. task killed): no orphans
            kill_process_group(proc.pid, grace_s=kill_grace_s, marker=token)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        shutil.rmtree(private, ignore_errors=True)


@dataclass
class _LaneState:
    """Follows one `render --batch` process: which row runs, which rows ended, deadlines."""

    items: list[LaneItem]
    indexes: list[int]
    out_dir: Path
    fmt: str
    toolchain: Toolchain
    record: Callable[[LaneOutcome], None]
    on_row_start: RowStartCallback | None
    on_progress: RowProgressCallback | None
    progress_interval_s: float
    timeout_per_row_s: float | None
    should_stop: Callable[[], bool]
    current: int | None = None
    current_since: float = 0.0
    settled: set[int] = field(default_factory=set)
    manifest_mtime: float = 0.0
    last_poll: float = 0.0
    timed_out_row: int | None = None
    killed: bool = False
    progress: _ProgressState | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    def tick(self, line: str | None) -> bool:
        """Called per output line and periodically; True asks the pump to kill the process."""
        now = time.monotonic()
        if line is not None:
            match = _BATCH_ROW.match(line)
            if match is not None:
                self.poll_manifest(force=True)  # settle the rows before it, in order
                self._start(int(match[1]), now)
            elif self.progress is not None:
                self.progress.feed(line)
            if not line.startswith(_MACHINE_PROGRESS):
                self.lines.append(line[:_MAX_LINE_CHARS])
        if now - self.last_poll >= _STATUS_POLL_S:
            self.last_poll = now
            self.poll_manifest()
        if self.should_stop():
            self.killed = True
            return True
        if (
            self.current is not None
            and self.timeout_per_row_s is not None
            and now - self.current_since > self.timeout_per_row_s
        ):
            self.timed_out_row = self.current
            self.killed = True
            return True
        return False

    def _start(self, position: int, now: float) -> None:
        if position >= len(self.indexes) or position in self.settled or position == self.current:
            return
        self.current = position
        self.current_since = now
        self.lines.clear()
        index = self.indexes[position]
        callback = self.on_progress
        self.progress = _ProgressState(
            (lambda text: callback(index, text)) if callback is not None else None,
            self.progress_interval_s,
        )
        if self.on_row_start is not None:
            self.on_row_start(index)

    def poll_manifest(self, *, force: bool = False) -> None:
        """Settle every row the CLI's manifest says ended, in order. Once we killed the process
        nothing it writes counts: on its way out it marks the rows after as failed."""
        if self.killed:
            return
        path = self.out_dir / "manifest.json"
        try:
            mtime = path.stat().st_mtime
            if mtime == self.manifest_mtime and not force:
                return
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # not written yet, or caught mid-write: next poll
        self.manifest_mtime = mtime
        for entry in doc.get("rows") or []:
            position = entry.get("index")
            if not isinstance(position, int) or position in self.settled:
                continue
            if position == self.timed_out_row:
                continue  # we killed it: it timed out, whatever the CLI wrote on its way out
            if position >= len(self.indexes):
                continue
            status = entry.get("status")
            if status == "running":
                if self.current is None or position > self.current:
                    self._start(position, time.monotonic())
            elif status == "completed":
                self._finish(position, entry)
            elif status in ("failed", "skipped"):
                message = str(entry.get("error") or f"row {status}")
                self._fail(position, LocalRenderError(_clip_message(message)))

    def _finish(self, position: int, entry: Mapping[str, Any]) -> None:
        index = self.indexes[position]
        produced = self.out_dir / f"{position}.{self.fmt}"
        target = self.items[index].output_path
        try:
            if not produced.is_file() or produced.stat().st_size == 0:
                raise LocalRenderError("hyperframes render finished the row but wrote no output")
            _move_into_place(produced, target)
            info = probe_video(target, ffprobe=self.toolchain.ffprobe)
        except (LocalRenderError, OSError) as exc:
            error = (
                exc
                if isinstance(exc, LocalRenderError)
                else LocalRenderError(_os_error(exc, target))
            )
            self._fail(position, error)
            return
        seconds = entry.get("renderTimeMs")
        result = LocalRenderResult(
            output_path=target,
            bytes=target.stat().st_size,
            frames=info.get("nb_frames") or (self.progress.frames_total if self.progress else None),
            duration_s=info.get("duration"),
            render_seconds=round(time.monotonic() - self.current_since, 3),
            width=info.get("width"),
            height=info.get("height"),
            codec=info.get("codec_name"),
            cli_render_seconds=round(seconds / 1000, 3)
            if isinstance(seconds, int | float)
            else None,
        )
        self.settled.add(position)
        if self.progress is not None:
            self.progress.finish()
        self.record(LaneOutcome(index, result=result))
        if self.current == position:
            self.current = None

    def _fail(self, position: int, error: LocalRenderError) -> None:
        self.settled.add(position)
        self.record(LaneOutcome(self.indexes[position], error=error))
        if self.current == position:
            self.current = None

    def settle_current(self, outcome: _Outcome, returncode: int | None) -> None:
        """After the process ended: the row it was on, if the manifest did not settle it."""
        if self.timed_out_row is not None and self.timed_out_row not in self.settled:
            self._fail(
                self.timed_out_row,
                LocalRenderTimeout(
                    f"Render did not finish within {self.timeout_per_row_s:g} s; "
                    "its process tree was killed",
                    timeout_s=float(self.timeout_per_row_s or 0),
                    log_tail=list(self.lines),
                ),
            )
            return
        if self.should_stop():
            return
        pending = [p for p in range(len(self.indexes)) if p not in self.settled]
        if not pending:
            return
        # The process died without settling the row it was on (a crash, OOM, SIGKILL).
        position = self.current if self.current is not None else pending[0]
        message = failure_message(outcome.lines or list(self.lines), returncode)
        self._fail(
            position, LocalRenderError(message, returncode=returncode, log_tail=outcome.tail)
        )


def _move_into_place(produced: Path, target: Path) -> None:
    """Move a finished output to its final path so a reader never sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(produced, target)
        return
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: another file system; copy next to the target, then rename
            raise
    partial = target.with_name(f".{target.stem}.partial-{uuid.uuid4().hex[:12]}{target.suffix}")
    try:
        shutil.copyfile(produced, partial)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _os_error(exc: OSError, target: Path) -> str:
    """An OS failure placing an output, said plainly (no variable values: only the path)."""
    reason = exc.strerror or type(exc).__name__
    return f"could not write the output {target.name!r}: {reason}"


def _clip_message(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
