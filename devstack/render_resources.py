"""What a local render costs a worker: CPU and memory of its whole process tree, measured.

A render is the CLI (node), Chrome (browser, renderer, GPU and utility processes, detached in
their own session) and ffmpeg; every one of them carries the render's environment cookie
(`MARKER_ENV`), so the tree is found in /proc wherever Chrome was reparented. Memory is sampled
every `interval_s` from `/proc/<pid>/smaps_rollup`: RSS (what `top` shows, counting pages Chrome's
processes share once per process) and PSS (shared pages split between their users: the sum is
what the tree really occupies). CPU is what the renders' processes consumed (user + system,
from the kernel's accounting of reaped children), so it does not depend on what else runs.

    uv run --frozen python -m devstack.render_resources --concurrency 1 2 --runs 3

renders the example template (or `--project DIR` with `--variables JSON`) with `render_local`
(the backend's own call and defaults), one at a time and then N at once, and prints one JSON
line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperframes_airflow.backends.local_cli import MARKER_ENV, all_pids, marked_processes, proc_stat

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "examples" / "templates" / "welcome"
MIB = 1024 * 1024


def memory_kib(pid: int) -> tuple[int, int, int] | None:
    """(RSS, PSS, USS) of one process in KiB, from smaps_rollup; None when it is gone. USS
    (its private pages) does not depend on what else runs; PSS does, a little: pages shared
    with other programs (another Chrome) are split with them too."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = dict.fromkeys(("Rss:", "Pss:", "Private_Clean:", "Private_Dirty:"), 0)
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in values:
            values[name] = int(rest.split()[0])
    uss = values["Private_Clean:"] + values["Private_Dirty:"]
    return values["Rss:"], values["Pss:"], uss


def has_env(pid: int, name: str, value: str | None = None) -> bool:
    """True when process `pid` carries `name` (with `value`, or any value) in its environment."""
    try:
        items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    if value is not None:
        return f"{name}={value}".encode() in items
    prefix = f"{name}=".encode()
    return any(item.startswith(prefix) for item in items)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process."""
    parents: dict[int, int] = {}
    for pid in all_pids():
        try:
            raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[0] not in ("Z", "X"):
            parents[pid] = int(fields[1])
    return parents


def with_descendants(roots: Iterable[int]) -> list[int]:
    """`roots` and every process below them. Chrome retitles its zygote-forked children
    (renderers, GPU), which overwrites what /proc shows of their environment, so the render
    cookie alone misses them: they are found as descendants of the processes that carry it."""
    parents = _parents()
    found = {pid for pid in roots if pid in parents}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return sorted(found)


def render_pids(owner: str | None = None) -> list[int]:
    """Live processes of renders (CLI, Chrome and its children, ffmpeg); with `owner`, only
    the renders `render_local(owner=...)` started (not other users' renders)."""
    if owner is not None:
        return with_descendants(marked_processes(owner, prefix=True))
    marked = []
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is not None and stat[0] not in ("Z", "X") and has_env(pid, MARKER_ENV):
            marked.append(pid)
    return with_descendants(marked)


@dataclass
class Peak:
    """The largest sums seen over a set of processes, and how many processes that was."""

    rss_kib: int = 0
    pss_kib: int = 0
    uss_kib: int = 0
    processes: int = 0

    def add(self, pids: Iterable[int]) -> None:
        rss = pss = uss = count = 0
        for pid in pids:
            found = memory_kib(pid)
            if found is not None:
                rss, pss, uss = rss + found[0], pss + found[1], uss + found[2]
                count += 1
        self.rss_kib = max(self.rss_kib, rss)
        self.pss_kib = max(self.pss_kib, pss)
        self.uss_kib = max(self.uss_kib, uss)
        self.processes = max(self.processes, count)

    def as_mib(self) -> dict[str, float | int]:
        return {
            "peak_rss_mib": round(self.rss_kib / 1024, 1),
            "peak_pss_mib": round(self.pss_kib / 1024, 1),
            "peak_uss_mib": round(self.uss_kib / 1024, 1),
            "peak_processes": self.processes,
        }


@dataclass
class TreeSampler:
    """Samples the peaks of named groups of processes in a background thread.

    :param groups: name -> a function listing the group's pids now.
    :param interval_s: Seconds between samples.
    """

    groups: dict[str, Callable[[], Iterable[int]]]
    interval_s: float = 0.1
    peaks: dict[str, Peak] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TreeSampler:
        self.peaks = {name: Peak() for name in self.groups}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, list_pids in self.groups.items():
                self.peaks[name].add(list_pids())
            self.samples += 1
            self._stop.wait(self.interval_s)


def measure(
    concurrency: int,
    *,
    workdir: Path,
    project: Path = TEMPLATE,
    variables: dict[str, Any] | None = None,
    interval_s: float = 0.1,
) -> dict[str, Any]:
    """Render `project` `concurrency` times at once with `render_local` (the local backend's
    call and its defaults: one capture worker, no GPU probe); CPU, memory and wall time.

    :param concurrency: Renders at once.
    :param workdir: Where the outputs go.
    :param project: The HyperFrames project (default: the example template).
    :param variables: Its variables (default: the example's title and name).
    :param interval_s: Seconds between memory samples.
    """
    from hyperframes_airflow.backends.local_cli import find_toolchain, render_local

    toolchain = find_toolchain()
    problems = toolchain.problems()
    if problems:
        raise SystemExit(f"local renderer not installed: {problems}")
    owner = f"measure{uuid.uuid4().hex[:5]}"  # this run's renders, told apart from any other

    def one(index: int) -> float:
        result = render_local(
            toolchain=toolchain,
            project_dir=project,
            output_path=workdir / f"c{concurrency}" / f"{index}.mp4",
            variables=variables if variables is not None else {"title": f"#{index}", "name": "Ada"},
            fps=None,
            quality=None,
            timeout_s=600,
            owner=owner,
        )
        return result.render_seconds

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with (
        TreeSampler({"renders": lambda: render_pids(owner)}, interval_s=interval_s) as sampler,
        ThreadPoolExecutor(concurrency) as pool,
    ):
        seconds = list(pool.map(one, range(concurrency)))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "render_s": [round(s, 2) for s in seconds],
        "cpu_s": round(cpu, 2),
        "cpu_s_per_render": round(cpu / concurrency, 2),
        "avg_cores": round(cpu / wall, 2),
        "seconds_per_video": round(wall / concurrency, 2),
        "samples": sampler.samples,
        **sampler.peaks["renders"].as_mib(),
        "cores": os.cpu_count(),
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
    }


def main() -> None:  # pragma: no cover - run by hand, see the module docstring
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--project", type=Path, default=TEMPLATE)
    parser.add_argument("--variables", type=json.loads, default=None, help="a JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hf-measure-") as tmp:
        for _ in range(args.runs):
            for concurrency in args.concurrency:
                found = measure(
                    concurrency, workdir=Path(tmp), project=args.project, variables=args.variables
                )
                print(json.dumps(found), flush=True)


if __name__ == "__main__":  # pragma: no cover
    main()
