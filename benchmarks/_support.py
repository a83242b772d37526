"""What every benchmark shares: the machine, the stacks, the moto watch, logs, tables, results.

- `machine_line()` and `LoadSampler`: the context every absolute number depends on (CPUs,
  RAM, and how loaded the machine was while a benchmark ran: other work shares 2 cores).
- `bench_stack(database, ...)`: a real Airflow stack on SQLite or on a private PostgreSQL
  (`devstack.postgres`), with the committed `hyperframes_airflow/` snapshot first on PYTHONPATH
  (`package_snapshot`) so edits made while a benchmark runs cannot reach it.
- `MotoWatch`: a state machine's executions (RUNNING count, start/stop dates) while keeping
  count of its own calls, so they can be taken out of the moto server's counts.
- `parse_ms` / `execution_api_calls`: the render tasks' `dag_file_parse_ms` from their logs, and
  the Execution API requests from the api-server's access log.
- `write_section` / `save_results`: each benchmark owns one marked section of
  docs/benchmarks.md, and keeps its raw results as JSON in `benchmarks/results/`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from devstack.airflow_stack import AirflowStack
from devstack.moto_stack import MotoStack
from devstack.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]
BENCH_DAGS = Path(__file__).resolve().parent / "dags"
RESULTS = Path(__file__).resolve().parent / "results"
DOCS = REPO / "docs" / "benchmarks.md"
WELCOME = REPO / "examples" / "templates" / "welcome"
THEMES = ("dark", "light")
DATABASES = ("postgres", "sqlite")
T = TypeVar("T")


# -- the machine ------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """nproc, RAM, CPU model, OS, Python."""
    cpu, ram = platform.processor() or "unknown", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "ram": ram,
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def machine_line() -> str:
    m = machine_info()
    return (
        f"{m['nproc']} CPUs (`nproc`), {m['ram']} RAM, {m['cpu']}, {m['os']}, Python {m['python']}"
    )


class LoadSampler:
    """Samples the 1-minute load average every few seconds while a benchmark runs."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 1)

    def note(self) -> str:
        """One line for the section: load while it ran, and how long it took."""
        if not self.samples:
            return ""
        mean = statistics.fmean(self.samples)
        return (
            f"Load average (1 min) while it ran: mean {mean:.2f}, max {max(self.samples):.2f} "
            f"on {machine_info()['nproc']} CPUs (sampled every {self.every_s:g} s; above the CPU "
            "count something else was competing, the benchmark's own stack included); the "
            f"command took {(time.monotonic() - self.t0) / 60:.1f} min."
        )


# -- batches and moto ---------------------------------------------------------------------------


def welcome_rows(count: int, prefix: str, **test_vars: Any) -> list[dict[str, Any]]:
    """`count` rows matching `examples/templates/welcome` (title, name, accent, theme), plus the
    moto stack's `hfTest*` variables (undeclared: warnings, not errors)."""
    return [
        {
            "outputKey": f"{prefix}/{i:06d}.mp4",
            "variables": {
                "title": f"Welcome aboard #{i}",
                "name": f"Customer {i}",
                "accent": f"#{(i * 2654435761) % 0xFFFFFF:06x}",
                "theme": THEMES[i % 2],
                **test_vars,
            },
        }
        for i in range(count)
    ]


def jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(dict(r), separators=(",", ":")) + "\n" for r in rows)


def put_batch(moto: MotoStack, key: str, rows: list[dict[str, Any]]) -> str:
    """Upload rows as JSONL to the stack's bucket; returns the s3:// URI."""
    moto.boto3_client("s3").put_object(Bucket=moto.bucket, Key=key, Body=jsonl(rows).encode())
    return f"s3://{moto.bucket}/{key}"


def ideal_makespan(rows: int, slots: int, seconds: float) -> float:
    return math.ceil(rows / slots) * seconds


@dataclass
class Execution:
    arn: str
    status: str
    start: datetime
    stop: datetime | None


class MotoWatch:
    """Reads a moto server's executions and remembers how many calls it made by action."""

    def __init__(self, moto: MotoStack) -> None:
        self.moto = moto
        self.client = moto.boto3_client("stepfunctions")
        self.own_calls: Counter[str] = Counter()

    def executions(self, state_machine_arn: str, status: str | None = None) -> list[Execution]:
        out: list[Execution] = []
        kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": 1000}
        if status:
            kwargs["statusFilter"] = status
        while True:
            page = self.client.list_executions(**kwargs)
            self.own_calls["states:ListExecutions"] += 1
            out.extend(
                Execution(e["executionArn"], e["status"], e["startDate"], e.get("stopDate"))
                for e in page.get("executions", [])
            )
            token = page.get("nextToken")
            if not token:
                return out
            kwargs["nextToken"] = token

    def running(self, state_machine_arn: str) -> int:
        return len(self.executions(state_machine_arn, "RUNNING"))

    def server_calls(self) -> Counter[str]:
        """The server's counts since the last reset, minus this watcher's own calls."""
        calls = self.moto.calls()
        calls.subtract(self.own_calls)
        return +calls

    def reset(self) -> None:
        self.moto.reset_calls()
        self.own_calls.clear()


def peak_overlap(intervals: Iterable[tuple[float, float | None]]) -> int:
    """Most intervals open at one instant (start, stop-or-None)."""
    events: list[tuple[float, int]] = []
    for start, stop in intervals:
        events.append((start, 1))
        if stop is not None:
            events.append((stop, -1))
    peak = current = 0
    for _, delta in sorted(events):
        current += delta
        peak = max(peak, current)
    return peak


def sfn_calls(calls: Mapping[str, int]) -> dict[str, int]:
    """Only the Step Functions actions, short names."""
    return {
        k.split(":", 1)[1]: v for k, v in sorted(calls.items()) if k.startswith("states:") and v
    }


# -- stacks -------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    pythonpath: Path
    commit: str
    dirty: bool

    @property
    def dags(self) -> Path:
        """The benchmark DAGs folder as committed (its files find the example template
        next to them, two levels up, as in the checkout)."""
        return self.pythonpath / "benchmarks" / "dags"

    def env(self) -> dict[str, str]:
        """PYTHONPATH for every stack process: the snapshot first, then its DAGs folder (its
        support modules, e.g. the floor's trigger, are imported by module path)."""
        return {"PYTHONPATH": os.pathsep.join((str(self.pythonpath), str(self.dags)))}

    @property
    def label(self) -> str:
        note = " (uncommitted changes not measured)" if self.dirty else ""
        return f"`hyperframes_airflow` at commit {self.commit}{note}"


#: What a snapshot holds: the package, the benchmark DAGs and the template they render.
SNAPSHOT_PATHS = ("hyperframes_airflow", "benchmarks/dags", "examples/templates/welcome")


def package_snapshot(work: Path) -> Snapshot:
    """`hyperframes_airflow/`, the benchmark DAGs and their template as committed at HEAD,
    extracted under `work/pkg` with bytecode compiled (the stack sets PYTHONDONTWRITEBYTECODE,
    so an uncompiled copy would be compiled from source in every task process). Edits made
    while a benchmark runs reach neither its stack's code nor its DAG files."""

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, check=True
        ).stdout

    commit = git("rev-parse", "--short=10", "HEAD").decode().strip()
    dirty = bool(git("status", "--porcelain", "--", *SNAPSHOT_PATHS).strip())
    target = work / "pkg"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(git("archive", "HEAD", *SNAPSHOT_PATHS))) as tar:
        tar.extractall(target, filter="data")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(target / "hyperframes_airflow")],
        check=True,
    )
    return Snapshot(target, commit, dirty)


#: What a forkserver preloads: Airflow's task runner and SDK, and what the benchmark DAG files
#: import (our factory and, through it, the Amazon provider's base operator and links).
FORKSERVER_PRELOAD = (
    "airflow.sdk,airflow.sdk.execution_time.task_runner,airflow.sdk.execution_time.supervisor,"
    "hyperframes_airflow.batch,airflow.providers.amazon.aws.operators.step_function"
)
START_METHODS = ("fork", "forkserver")


def start_method_env(start_method: str) -> dict[str, str]:
    """The stack's environment for `[core] mp_start_method` (`forkserver` preloads
    `FORKSERVER_PRELOAD`); `fork`, Linux's default, needs nothing."""
    if start_method not in START_METHODS:
        raise ValueError(f"start method must be one of {START_METHODS}; got {start_method!r}")
    if start_method == "fork":
        return {}
    return {
        "AIRFLOW__CORE__MP_START_METHOD": start_method,
        "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": FORKSERVER_PRELOAD,
    }


def stack_label(database: str, start_method: str) -> str:
    """How a table names a stack: `PostgreSQL`, `SQLite, forkserver + preload`."""
    db = "PostgreSQL" if database == "postgres" else "SQLite"
    return f"{db}, forkserver + preload" if start_method == "forkserver" else db


@contextlib.contextmanager
def bench_stack(
    database: str,
    home: Path,
    dags: Path,
    env: Mapping[str, str],
    *,
    parallelism: int = 8,
) -> Iterator[tuple[AirflowStack, PostgresServer | None]]:
    """A started AirflowStack on `database` ("sqlite" or "postgres"); PostgreSQL is started
    first from Debian's package and stopped after the stack."""
    if database not in DATABASES:
        raise ValueError(f"database must be one of {DATABASES}; got {database!r}")
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(PostgresServer()) if database == "postgres" else None
        url = pg.sqlalchemy_url() if pg is not None else None
        af = stack.enter_context(
            AirflowStack(home, dags, env=dict(env), parallelism=parallelism, database=url)
        )
        yield af, pg


def bytecode_check() -> str:
    """Whether the venv's Airflow has compiled bytecode (uv sync --compile-bytecode)."""
    import airflow

    root = Path(airflow.__file__).parent
    pycs = sum(1 for _ in root.glob("**/__pycache__/*.pyc"))
    return f"{pycs:,} `.pyc` files under the venv's `airflow/`"


def retrying(call: Callable[[], T], tries: int = 5, pause_s: float = 5.0) -> T:
    """`call()`, again after a pause when the stack's API times out or is briefly unavailable
    (a loaded 2-core machine can stall the api-server past the client's timeout)."""
    import httpx

    for attempt in range(tries):
        try:
            return call()
        except (httpx.TimeoutException, httpx.TransportError):
            if attempt == tries - 1:
                raise
            time.sleep(pause_s)
    raise AssertionError("unreachable")


# -- logs ---------------------------------------------------------------------------------------

_PARSE_MS = re.compile(r"dag_file_parse_ms['\"]?\s*[:=]\s*['\"]?(\d+(?:\.\d+)?)")
_PATH = re.compile(r"""['"]?path['"]?\s*[:=]\s*['"]?(/[^\s'",]*)""")
_METHOD = re.compile(r"""['"]?method['"]?\s*[:=]\s*['"]?([A-Z]+)""")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def task_logs(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """Every log file (tries and trigger logs) of a task's instances in one run."""
    folder = stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return [p.read_text(errors="replace") for p in sorted(folder.glob("**/attempt=*.log*"))]


def parse_ms(logs: Sequence[str]) -> list[float]:
    """`dag_file_parse_ms` of every "Worker startup parse complete" line."""
    out: list[float] = []
    for text in logs:
        for line in text.splitlines():
            if "Worker startup parse complete" in line:
                match = _PARSE_MS.search(line)
                if match:
                    out.append(float(match.group(1)))
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def log_offset(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def execution_api_calls(log: Path, since: int = 0) -> Counter[str]:
    """Execution API requests in the api-server's access log after byte `since`, by
    `METHOD /execution/<route>` (ids and names replaced by placeholders)."""
    counts: Counter[str] = Counter()
    with log.open("rb") as fh:
        fh.seek(since)
        for raw in fh:
            line = raw.decode(errors="replace")
            if "request finished" not in line or "/execution/" not in line:
                continue
            path, method = _PATH.search(line), _METHOD.search(line)
            if not path:
                continue
            counts[f"{method.group(1) if method else '?'} {route(path.group(1))}"] += 1
    return counts


def route(path: str) -> str:
    """`/execution/task-instances/<id>/run` from a concrete path."""
    path = _UUID.sub("{id}", path)
    parts = path.split("/")
    if len(parts) > 3 and parts[2] == "xcoms":  # /execution/xcoms/dag/run/task/key
        return "/".join([*parts[:3], "{dag}/{run}/{task}/{key}"])
    return path


# -- results and the report ---------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value)}")


def save_results(section_id: str, value: Any) -> Path:
    """Keep a benchmark's raw results (JSON) so a section can be re-rendered and checked."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{section_id}.json"
    path.write_text(json.dumps(value, default=_plain, indent=1) + "\n", encoding="utf-8")
    return path


def write_section(path: Path, section_id: str, body: str) -> None:
    """Replace this benchmark's section in the markdown file (between markers), or append it."""
    start, end = f"<!-- {section_id}:start -->", f"<!-- {section_id}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


@dataclass
class Table:
    """A markdown table built row by row."""

    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)
