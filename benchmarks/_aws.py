"""Shared pieces of the benchmarks that run against a moto server (B1 makespan, B4 dispatch).

- batch rows for `examples/templates/welcome` plus the test stack's fate variables;
- `MotoWatch`: list a state machine's executions (RUNNING count, start/stop dates) while
  keeping count of its own calls, so they can be taken out of the server's call counts;
- `package_snapshot`: the committed `hyperframes_airflow/` copied aside and put first on
  PYTHONPATH for every process a benchmark starts, so edits made to the working tree while a
  benchmark runs (a DAG file that stops importing half-way through a run) cannot reach it, and
  the section can name the commit it measured.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import tarfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack.moto_stack import MotoStack

REPO = Path(__file__).resolve().parents[1]
BENCH_DAGS = Path(__file__).resolve().parent / "dags"
OURS_DAG_ID = "hf_bench_ours"
NAIVE_DAG_ID = "hf_bench_naive"
OURS_POOL = "bench_ours"
NAIVE_POOL = "bench_naive"
OURS_RENDER_TASK = "render_batch.render"
NAIVE_RENDER_TASK = "render"
THEMES = ("dark", "light")


def welcome_rows(count: int, prefix: str, **test_vars: Any) -> list[dict[str, Any]]:
    """`count` rows whose variables match the welcome template's schema (title, name, accent,
    theme), plus the moto stack's `hfTest*` variables (undeclared: warnings, not errors)."""
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


def peak_overlap(executions: list[Execution]) -> int:
    """Most executions running at one instant, from their start and stop dates."""
    events: list[tuple[float, int]] = []
    for e in executions:
        events.append((e.start.timestamp(), 1))
        if e.stop is not None:
            events.append((e.stop.timestamp(), -1))
    peak = current = 0
    for _, delta in sorted(events, key=lambda ev: (ev[0], ev[1])):
        current += delta
        peak = max(peak, current)
    return peak


def sfn_calls(calls: Mapping[str, int]) -> dict[str, int]:
    """Only the Step Functions actions, short names."""
    return {
        k.split(":", 1)[1]: v for k, v in sorted(calls.items()) if k.startswith("states:") and v
    }


def machine_line() -> str:
    from benchmarks.local_throughput import machine_info

    m = machine_info()
    return (
        f"{m['nproc']} CPUs (`nproc`), {m['ram']} RAM, {m['cpu']}, {m['os']}, Python {m['python']}"
    )


@dataclass
class Snapshot:
    pythonpath: Path
    commit: str
    dirty: bool

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.pythonpath)}

    @property
    def label(self) -> str:
        note = (
            " (the working tree had uncommitted changes in `hyperframes_airflow/`; they were "
            "not measured)"
            if self.dirty
            else ""
        )
        return f"`hyperframes_airflow` at commit {self.commit}{note}"


def package_snapshot(work: Path) -> Snapshot:
    """Extract `hyperframes_airflow/` as committed at HEAD under `work/pkg`."""

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, check=True
        ).stdout

    commit = git("rev-parse", "--short=10", "HEAD").decode().strip()
    dirty = bool(git("status", "--porcelain", "--", "hyperframes_airflow").strip())
    target = work / "pkg"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(git("archive", "HEAD", "hyperframes_airflow"))) as tar:
        tar.extractall(target, filter="data")
    return Snapshot(target, commit, dirty)
