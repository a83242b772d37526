"""B3: validating a 100,000-row batch, `hyperframes-airflow validate --json` vs the Node CLI.

Rows carry variables matching `examples/templates/welcome`. Every measurement is a fresh
process timed from outside (wall, its own peak RSS through `wait4`), the fastest of `repeat`:

- ours: `hyperframes-airflow validate PROJECT BATCH --json` (parse, structure, keys, variables
  against the composition's schema, the exact Step Functions input and its size, names);
- Node: `hyperframes lambda render-batch PROJECT --batch BATCH --width 640 --height 360
  --dry-run --json` (0.8.170 + @hyperframes/aws-lambda 0.8.31, `benchmarks/_node_cli.py`).

Then one more run of ours under cProfile: where the time goes, by function (own time) and by
our module (cumulative), so a fix can be aimed without changing the parser here.
"""

from __future__ import annotations

import json
import os
import pstats
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import _node_cli
from benchmarks._support import WELCOME, Table, fmt, jsonl, machine_line, welcome_rows

SECTION_ID = "B3"

_PROFILE = r"""
import cProfile, sys
from hyperframes_airflow.cli import main
cProfile.run("rc = main(['validate', sys.argv[1], sys.argv[2], '--json'])", sys.argv[3])
"""


@dataclass
class Cell:
    wall_s: float | None = None
    rss_mb: float | None = None
    ok: bool = False
    note: str = ""


@dataclass
class B3Result:
    started_at: str
    node_versions: str | None
    rows: list[int]
    ours: dict[int, Cell]
    node: dict[int, Cell]
    profile_total_s: float = 0.0
    top_own: list[tuple[str, float, int]] = field(default_factory=list)
    top_cumulative: list[tuple[str, float]] = field(default_factory=list)


def run(rows: list[int], repeat: int = 3, keep: bool = False) -> B3Result:
    work = Path(tempfile.mkdtemp(prefix="hf-bench-b3-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    node = _node_cli.ensure()
    try:
        _node_cli.write_stack_state(
            work,
            bucket="hf-bench",
            state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:hf-bench",
            region="us-east-1",
        )
        ours: dict[int, Cell] = {}
        theirs: dict[int, Cell] = {}
        for count in rows:
            batch = work / f"rows-{count}.jsonl"
            batch.write_text(jsonl(welcome_rows(count, "bench/b3")), encoding="utf-8")
            ours[count] = _ours(work, batch, count, repeat)
            theirs[count] = (
                Cell(note=node)
                if isinstance(node, str)
                else _node(node, work, batch, count, repeat)
            )
            print(f"[b3] {count}: ours {ours[count]}, node {theirs[count]}", flush=True)
        result = B3Result(
            started_at=started_at,
            node_versions=None if isinstance(node, str) else node.versions,
            rows=rows,
            ours=ours,
            node=theirs,
        )
        _profile(work, work / f"rows-{max(rows)}.jsonl", result)
        return result
    finally:
        if keep:
            print(f"[b3] kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _best(
    argv: list[str], work: Path, name: str, repeat: int, env: dict[str, str] | None = None
) -> _node_cli.Measured:
    best: _node_cli.Measured | None = None
    for i in range(repeat):
        measured = _node_cli.run_measured(argv, cwd=work, env=env, stdout=work / f"{name}-{i}.out")
        if measured.returncode not in (0, 1):
            return measured
        if best is None or measured.wall_s < best.wall_s:
            best = measured
    assert best is not None
    return best


def _ours(work: Path, batch: Path, count: int, repeat: int) -> Cell:
    exe = Path(sys.executable).with_name("hyperframes-airflow")
    m = _best(
        [str(exe), "validate", str(WELCOME), str(batch), "--json"],
        work,
        f"ours-{count}",
        repeat,
        env=dict(os.environ),
    )
    cell = Cell(m.wall_s, m.max_rss_mb)
    try:
        doc = json.loads(m.stdout.read_text())
        cell.ok = bool(doc["valid"]) and doc["rows"] == count
        cell.note = f"{len(doc.get('issues', []))} issues"
    except (ValueError, KeyError) as exc:
        cell.note = f"rc={m.returncode}: {exc}: {m.stderr_tail}"
    return cell


def _node(node: _node_cli.NodeCli, work: Path, batch: Path, count: int, repeat: int) -> Cell:
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
        "--dry-run",
        "--json",
    )
    m = _best(argv, work, f"node-{count}", repeat, env=node.env())
    would = m.stdout.read_bytes().count(b'"would-invoke"')
    cell = Cell(m.wall_s, m.max_rss_mb, ok=m.returncode == 0 and would == count)
    cell.note = f"{would} would-invoke" + (
        "" if cell.ok else f"; rc={m.returncode} {m.stderr_tail}"
    )
    return cell


def _profile(work: Path, batch: Path, result: B3Result) -> None:
    out = work / "validate.prof"
    _node_cli.run_measured(
        [sys.executable, "-c", _PROFILE, str(WELCOME), str(batch), str(out)],
        cwd=work,
        env=dict(os.environ),
        stdout=work / "profile.out",
    )
    stats = pstats.Stats(str(out))
    raw = stats.stats  # type: ignore[attr-defined]
    result.profile_total_s = round(stats.total_tt, 2)  # type: ignore[attr-defined]
    own = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    result.top_own = [(_name(k), round(v[2], 3), int(v[1])) for k, v in own]
    ours = [(k, v) for k, v in raw.items() if "hyperframes_airflow" in k[0]]
    cum = sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:15]
    result.top_cumulative = [(_name(k), round(v[3], 3)) for k, v in cum]


def _name(key: tuple[str, int, str]) -> str:
    path, line, func = key
    if "hyperframes_airflow/" in path:
        path = "hyperframes_airflow/" + path.split("hyperframes_airflow/", 1)[1]
    elif "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith("~") or path == "":
        return func
    return f"{path}:{line}({func})"


def to_markdown(result: B3Result, *, command: str, load_note: str) -> str:
    table = Table(
        [
            "rows",
            "ours `validate --json` wall (s) / RSS (MB)",
            "Node `render-batch --dry-run --json` wall (s) / RSS (MB)",
            "ours / Node wall",
            "ours",
            "Node",
        ]
    )
    for n in result.rows:
        a, b = result.ours[n], result.node[n]
        ratio = fmt(a.wall_s / b.wall_s, 2) if a.wall_s and b.wall_s else "n/a"
        table.add(
            f"{n:,}",
            f"{fmt(a.wall_s, 2)} / {fmt(a.rss_mb, 0)}",
            f"{fmt(b.wall_s, 2)} / {fmt(b.rss_mb, 0)}",
            ratio,
            ("valid, " if a.ok else "NOT OK, ") + a.note,
            b.note,
        )
    own = Table(["function (own time)", "s", "calls"])
    for name, secs, calls in result.top_own:
        own.add(f"`{name}`", f"{secs:.3f}", f"{calls:,}")
    cum = Table(["our function (cumulative)", "s"])
    for name, secs in result.top_cumulative:
        cum.add(f"`{name}`", f"{secs:.3f}")
    return "\n".join(
        [
            f"## {SECTION_ID}: validating 100,000 rows, ours vs the Node CLI's dry run",
            "",
            f"Measured {result.started_at} with `{command}`.",
            "",
            f"Machine: {machine_line()}. Node side: {result.node_versions or 'unavailable'}. Each "
            "cell is the fastest of its runs, each a fresh process timed from outside (start-up "
            "and imports included). Nothing is asserted.",
            "",
            table.render(),
            "",
            f"Where ours spends its time at {max(result.rows):,} rows (one run under cProfile, "
            f"{result.profile_total_s:g} s of profiled time; cProfile slows every call, so "
            "read the shares, not the seconds):",
            "",
            own.render(),
            "",
            cum.render(),
            "",
            f"- {load_note}",
            "",
        ]
    )
