"""What a DAG file using `render_batch` costs to import, on top of `airflow.sdk`.

Every task process parses its DAG file (`dag_file_parse_ms` in its log), so what that file
imports is paid once per render task. Measured in fresh interpreters with the venv's bytecode
and `PYTHONDONTWRITEBYTECODE` set (as on the stack), the fastest of `repeat` runs:

- `import airflow.sdk` alone (the floor every DAG file pays);
- the same, then running a DAG file that calls `render_batch(backend="lambda")` (the README's
  example shape) and, for comparison, the naive benchmark DAG (the Amazon provider's
  `StepFunctionStartExecutionOperator`);
- which of boto3, botocore, aiobotocore, s3fs, fsspec end up imported by the DAG file, and
  through which of our modules (`python -X importtime`'s tree).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._support import BENCH_DAGS, REPO, Table, machine_line, package_snapshot

SECTION_ID = "imports"
HEAVY = ("boto3", "botocore", "aiobotocore", "s3fs", "fsspec")

DAG_FILE = """
from airflow.sdk import DAG
from hyperframes_airflow.batch import render_batch
from hyperframes_airflow.contract.config import RenderConfig

with DAG("digest_videos", schedule=None):
    render_batch(
        project_dir="/opt/templates/digest",
        batch="s3://my-render-bucket/digests/{{ ds }}.jsonl",
        config=RenderConfig(width=1280, height=720, fps=30),
        backend="lambda",
    )
"""

_PROBE = r"""
import json, runpy, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
before = set(sys.modules)
if sys.argv[1] != "-":
    runpy.run_path(sys.argv[1])
t2 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(sys.argv[2].split(",")))
print(json.dumps({"sdk_s": t1 - t0, "dag_s": t2 - t1, "heavy": heavy,
                  "new_modules": len(set(sys.modules) - before)}))
"""


@dataclass
class Probe:
    label: str
    sdk_s: float
    dag_s: float
    heavy: list[str]
    new_modules: int
    chains: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ImportsResult:
    started_at: str
    probes: list[Probe]
    pyc_note: str


def _env(snapshot: Path | None) -> dict[str, str]:
    """The stack's import conditions; `snapshot`: a bytecode-compiled copy of our package first
    on the path (as a wheel install has), else the editable install's uncompiled source."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="hf-bench-imports-")
    paths = [str(snapshot)] if snapshot is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(BENCH_DAGS)])
    return env


def _probe(label: str, path: str, repeat: int, snapshot: Path | None) -> Probe:
    best: dict[str, Any] | None = None
    env = _env(snapshot)
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, path, ",".join(HEAVY)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=env["AIRFLOW_HOME"],
        )
        doc = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or float(doc["dag_s"]) < float(best["dag_s"]):
            best = doc
    assert best is not None
    probe = Probe(
        label,
        round(float(best["sdk_s"]), 3),
        round(float(best["dag_s"]), 3),
        list(best["heavy"]),
        int(best["new_modules"]),
    )
    if path != "-" and probe.heavy and snapshot is not None:
        probe.chains = _chains(path, env, probe.heavy)
    return probe


_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)")


def _chains(path: str, env: dict[str, str], targets: list[str]) -> dict[str, list[str]]:
    """For each heavy package: the chain of imports that first pulled it in."""
    code = f"import airflow.sdk, runpy; runpy.run_path({path!r})"
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=env["AIRFLOW_HOME"],
    ).stderr
    entries = []  # importtime prints children before their parent
    for line in err.splitlines():
        m = _LINE.match(line)
        if m:
            entries.append((len(m.group(2)), m.group(3), int(m.group(1))))
    chains: dict[str, list[str]] = {}
    for target in targets:
        for i, (depth, name, _cum) in enumerate(entries):
            if name != target:
                continue
            chain, want = [name], depth
            for d, n, _ in entries[i + 1 :]:
                if d < want:
                    chain.append(n)
                    want = d
                    if d == 0:
                        break
            chains[target] = list(reversed(chain))
            break
    return chains


def run(repeat: int = 5) -> ImportsResult:
    work = Path(tempfile.mkdtemp(prefix="hf-bench-dagfile-"))
    dag = work / "digest_videos.py"
    dag.write_text(DAG_FILE, encoding="utf-8")
    compiled = package_snapshot(work).pythonpath
    probes = [
        _probe("`import airflow.sdk` only", "-", repeat, compiled),
        _probe('+ a `render_batch(backend="lambda")` DAG file', str(dag), repeat, compiled),
        _probe(
            "+ the same DAG file, `hyperframes_airflow` from the editable source (no .pyc)",
            str(dag),
            repeat,
            None,
        ),
        _probe(
            "+ the naive DAG (`StepFunctionStartExecutionOperator`)",
            str(BENCH_DAGS / "hf_bench_naive.py"),
            repeat,
            compiled,
        ),
    ]
    import airflow

    pycs = sum(1 for _ in Path(airflow.__file__).parent.glob("**/__pycache__/*.pyc"))
    ours = sum(1 for _ in (REPO / "hyperframes_airflow").glob("**/__pycache__/*.pyc"))
    note = (
        f"{pycs:,} `.pyc` files under the venv's `airflow/` (uv sync --compile-bytecode); "
        f"{ours} under the editable install's `hyperframes_airflow/` (uv compiles site-packages, "
        "not an editable source tree), so the rows say which copy of our package was imported: "
        "a compiled snapshot of HEAD (as the stacks in B1/B4/B5 and a wheel install use) or "
        "the editable source"
    )
    return ImportsResult(datetime.now(UTC).isoformat(timespec="seconds"), probes, note)


def to_markdown(result: ImportsResult, *, command: str, load_note: str) -> str:
    table = Table(
        [
            "what is imported",
            "`import airflow.sdk` (s)",
            "DAG file on top (s)",
            "modules added by the DAG file",
            "heavy packages imported by the DAG file",
        ]
    )
    for p in result.probes:
        table.add(
            p.label,
            f"{p.sdk_s:.3f}",
            f"{p.dag_s:.3f}" if p.label[0] == "+" else "-",
            p.new_modules if p.label[0] == "+" else "-",
            ", ".join(p.heavy) or "none",
        )
    lines = [
        "## Import cost of a DAG file using `render_batch`",
        "",
        f"Measured {result.started_at} with `{command}`.",
        "",
        f"Machine: {machine_line()}. Bytecode: {result.pyc_note}; `PYTHONDONTWRITEBYTECODE=1` "
        "as on the stack. Fresh interpreter per run, fastest of 5. Nothing is asserted.",
        "",
        table.render(),
        "",
    ]
    for p in result.probes:
        for pkg, chain in p.chains.items():
            lines.append(
                f"- {p.label}: `{pkg}` first imported through "
                + " -> ".join(f"`{c}`" for c in chain)
            )
    lines += [f"- {load_note}", ""]
    return "\n".join(lines)
