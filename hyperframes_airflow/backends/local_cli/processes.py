"""The process tree of a render: find it through /proc, and kill all of it.

Puppeteer launches Chrome *detached* (its own session) and Chrome's crashpad handlers
double-fork to init, so a process-group kill alone leaves Chrome running (measured). Every
process of a render inherits a unique `HYPERFRAMES_AIRFLOW_RENDER_ID` environment cookie, and
`kill_process_group` kills the group *and* every process carrying the cookie.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

MARKER_ENV = "HYPERFRAMES_AIRFLOW_RENDER_ID"
"""Environment cookie inherited by every process of one render (node, chrome, ffmpeg)."""


def render_marker(pid: int) -> str | None:
    """The render cookie of process `pid`, or None if it is gone, foreign or not a render."""
    env = _read_environ(pid, settle_s=1.0)
    return env.get(MARKER_ENV) if env is not None else None


def marked_processes(marker: str, *, prefix: bool = False) -> list[int]:
    """Live (non-zombie) processes carrying this render's cookie, wherever they were reparented
    (`prefix`: any cookie starting with `marker`, e.g. every render of one owner)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found: list[int] = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        try:
            data = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        items = data.split(b"\0")
        hit = any(i.startswith(needle) for i in items) if prefix else needle in items
        if hit and not _is_zombie(pid):
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
