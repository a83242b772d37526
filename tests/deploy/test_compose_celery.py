"""docker/docker-compose.yaml's celery profile: CeleryExecutor beside the default LocalExecutor.

Static, like test_compose.py (no Docker engine here): the project compose would start is resolved
from the file with the documented switches (`--profile celery` plus
`AIRFLOW_EXECUTOR=CeleryExecutor`) and without them. The worker's start-up guard, a shell script
inside the compose file, runs for real with a stand-in `airflow`.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO
from tests.deploy.test_compose import (
    AIRFLOW_SERVICES,
    CELERY_ENV,
    CELERY_SERVICES,
    DOCKERFILE,
    ONE_SHOT,
    _depends,
    _env,
    _locked_version,
    _project,
    _text,
)

#: Every service that runs Airflow under the celery profile.
CELERY_AIRFLOW = (*AIRFLOW_SERVICES, "airflow-worker", "airflow-init")
DOCS = REPO / "docs" / "deploying.md"


@pytest.fixture(scope="module")
def celery() -> dict[str, dict[str, Any]]:
    return _project(CELERY_ENV, ("celery",))


@pytest.fixture(scope="module")
def default() -> dict[str, dict[str, Any]]:
    return _project()


def test_the_default_profile_is_unchanged(default: dict[str, dict[str, Any]]) -> None:
    """No profile, no variable: the LocalExecutor deployment, with no broker and no worker."""
    assert set(default) == {"postgres", "airflow-init", *AIRFLOW_SERVICES}
    assert not set(default) & CELERY_SERVICES
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        assert _env(default[name])["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert "redis" not in _depends(default[name]), f"{name} would wait for a broker"
    # moto alone does not bring Celery either.
    moto = _project({}, ("moto",))
    assert not set(moto) & CELERY_SERVICES
    assert _env(moto["moto-stack"])["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_the_celery_profile_switches_every_airflow_service(
    celery: dict[str, dict[str, Any]],
) -> None:
    assert set(celery) == {"postgres", "airflow-init", *AIRFLOW_SERVICES, *CELERY_SERVICES}
    envs = {name: _env(celery[name]) for name in CELERY_AIRFLOW}
    for name, env in envs.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    for key in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"):
        values = {env.get(key) for env in envs.values()}
        assert len(values) == 1 and None not in values, (key, values)
    with_moto = _project(CELERY_ENV, ("celery", "moto"))
    assert _env(with_moto["moto-stack"])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"

    env = envs["airflow-scheduler"]
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis"
    assert broker.port in (None, 6379) and broker.path in ("", "/0")
    # The result backend is the metadata database, with the same credentials.
    backend = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
    db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert backend.scheme == "db+postgresql"
    assert (backend.username, backend.password, backend.hostname, backend.path) == (
        db.username,
        db.password,
        db.hostname,
        db.path,
    )
    assert backend.port == db.port
    # Longer than any render task, or the broker hands a running one to a second worker.
    visibility = env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]
    assert int(visibility) >= 6 * 3600


def test_the_broker_is_healthchecked_and_awaited(celery: dict[str, dict[str, Any]]) -> None:
    redis = celery["redis"]
    assert redis["image"].startswith("redis:7.2"), "the last BSD-licensed Redis"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert redis["restart"] == "always"
    assert "ports" not in redis, "the broker needs no host port"
    worker = _depends(celery["airflow-worker"])
    assert worker["redis"] == "service_healthy"
    assert celery["airflow-worker"]["depends_on"]["redis"].get("required", True) is True
    assert worker["postgres"] == "service_healthy"
    assert worker["airflow-init"] == "service_completed_successfully"
    assert worker["airflow-apiserver"] == "service_healthy", "tasks talk to the execution API"
    for name in AIRFLOW_SERVICES:
        assert _depends(celery[name])["redis"] == "service_healthy", name
    # ...optional for them, so that without the profile they start with no broker.
    for name in AIRFLOW_SERVICES:
        spec = celery[name]["depends_on"]["redis"]
        assert spec == {"condition": "service_healthy", "required": False}, name


def test_the_worker_has_the_renderer_and_scales(celery: dict[str, dict[str, Any]]) -> None:
    worker = celery["airflow-worker"]
    assert worker["build"]["args"]["WITH_RENDERER"] == "true"
    assert (DOCKERFILE.parent / worker["build"]["context"]).resolve() == REPO
    assert 'if [ "$WITH_RENDERER" = "true" ]' in DOCKERFILE.read_text()
    # `--scale airflow-worker=N`: no fixed container name, no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["restart"] == "always"
    env = _env(worker)
    assert env["DUMB_INIT_SETSID"] == "0", "SIGTERM must reach Celery for a warm shutdown"
    assert worker["stop_grace_period"], "running renders get time to finish"
    check = " ".join(worker["healthcheck"]["test"])
    assert "celery --app airflow.providers.celery.executors.celery_executor.app" in check
    assert 'inspect ping -d "celery@${HOSTNAME}"' in check
    command = worker["command"]
    assert command[:2] == ["bash", "-c"]
    assert command[2].rstrip().endswith("exec airflow celery worker")
    # The same mounts as the scheduler: DAGs, templates, logs, outputs.
    assert worker["volumes"] == celery["airflow-scheduler"]["volumes"]


def test_worker_concurrency_is_set_for_renders(celery: dict[str, dict[str, Any]]) -> None:
    """Explicit, small (Airflow's default of 16 renders would overload a worker), explained, and
    the same number the docs size the pool with."""
    env = _env(celery["airflow-worker"])
    concurrency = int(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    assert 1 <= concurrency <= 4
    for name in CELERY_AIRFLOW:
        if name != "airflow-worker":
            assert "AIRFLOW__CELERY__WORKER_CONCURRENCY" not in _env(celery[name]), name
    assert "${HYPERFRAMES_WORKER_CONCURRENCY:-" in _text()
    block = _text().split("AIRFLOW__CELERY__WORKER_CONCURRENCY:")[0].rsplit("environment:", 1)[1]
    comment = " ".join(block.replace("#", " ").split())
    for fact in ("5.4 CPU-seconds", "0.6 GB", "2-core", "HYPERFRAMES_POOL_SLOTS"):
        assert fact in comment, f"the sizing comment does not mention {fact}"
    overridden = _project({**CELERY_ENV, "HYPERFRAMES_WORKER_CONCURRENCY": "3"}, ("celery",))
    assert _env(overridden["airflow-worker"])["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "3"
    default_image = "hyperframes-airflow:local-renderer"
    assert celery["airflow-worker"]["image"] == default_image
    row = f"| `{default_image}`, `{concurrency}` |"
    assert row in DOCS.read_text(encoding="utf-8"), "the variables table gives the default"


def test_the_output_root_is_wired_and_can_be_an_object_store() -> None:
    default = _project()
    for name in (*AIRFLOW_SERVICES, *ONE_SHOT - {"moto-stack"}):
        assert _env(default[name])["HYPERFRAMES_LOCAL_ROOT"] == "/opt/airflow/output", name
    root = "s3://my-render-bucket/local-renders"
    shared = _project({**CELERY_ENV, "HYPERFRAMES_LOCAL_ROOT": root}, ("celery",))
    for name in CELERY_AIRFLOW:
        assert _env(shared[name])["HYPERFRAMES_LOCAL_ROOT"] == root, name


def _guard() -> str:
    script: str = _project(CELERY_ENV, ("celery",))["airflow-worker"]["command"][2]
    return script


@pytest.fixture()
def fake_airflow(tmp_path: Path) -> Path:
    """An `airflow` on PATH that records its arguments instead of starting a worker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "airflow"
    fake.write_text(f'#!/bin/sh\necho "$*" > {shlex.quote(str(tmp_path / "argv"))}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.mark.parametrize("executor", ["LocalExecutor", "CeleryExecutor"])
def test_the_worker_starts_only_under_the_celery_executor(
    executor: str, fake_airflow: Path
) -> None:
    """`--profile celery` without AIRFLOW_EXECUTOR would leave workers idle while the scheduler
    runs every task itself: the worker says so and exits instead."""
    env = {
        "PATH": f"{fake_airflow}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW__CORE__EXECUTOR": executor,
    }
    done = subprocess.run(
        ["bash", "-c", _guard()], env=env, capture_output=True, text=True, timeout=30
    )
    argv = fake_airflow.parent / "argv"
    if executor == "CeleryExecutor":
        assert done.returncode == 0, done.stderr
        assert argv.read_text().split() == ["celery", "worker"]
    else:
        assert done.returncode != 0
        assert not argv.exists()
        assert "AIRFLOW_EXECUTOR=CeleryExecutor" in done.stderr
        assert "LocalExecutor" in done.stderr


def test_the_docs_explain_worker_renders_on_celery() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    section = docs.split("## Worker renders on Celery", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert commands, "the section shows the compose command"
    command = " ".join(commands[0].replace("\\\n", " ").split())
    assert "AIRFLOW_EXECUTOR=CeleryExecutor" in command
    assert "docker compose --profile celery up" in command
    assert "--scale airflow-worker=" in command
    workers = int(re.search(r"--scale airflow-worker=(\d+)", command)[1])  # type: ignore[index]
    slots = int(re.search(r"HYPERFRAMES_POOL_SLOTS=(\d+)", command)[1])  # type: ignore[index]
    concurrency = int(
        _env(_project(CELERY_ENV, ("celery",))["airflow-worker"])[
            "AIRFLOW__CELERY__WORKER_CONCURRENCY"
        ]
    )
    assert slots == workers * concurrency, "pool slots = workers x renders per worker"
    for fact in (
        "Lambda",
        "per render",
        "throughput is workers",
        "renders per worker",
        "5.4 CPU-seconds",
        "0.6 GB",
        "2-core",
        "devstack.render_resources",
        "HYPERFRAMES_WORKER_CONCURRENCY",
        "HYPERFRAMES_POOL_SLOTS",
        "HYPERFRAMES_LOCAL_ROOT",
        "s3://",
        "gs://",
        "hyperframes_default",
    ):
        assert fact in flat, f"the Celery section does not mention {fact!r}"


# -- the dependency ---------------------------------------------------------------------------


def test_the_celery_provider_is_an_extra_locked_and_installed() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extra = project["project"]["optional-dependencies"]["celery"]
    assert any(r.startswith("apache-airflow-providers-celery>=") for r in extra)
    assert "hyperframes-airflow[celery]" in project["dependency-groups"]["dev"]
    provider = _locked_version("apache-airflow-providers-celery")
    celery_version = _locked_version("celery")
    assert tuple(map(int, celery_version.split(".")[:2])) < (5, 7), "the provider needs <5.7"
    assert _locked_version("redis")
    # Installed here (uv sync installs the dev group), and the executor really loads: celery 5.7
    # removed a name the provider's executor imports.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.metadata as m, redis, celery;"
            "from airflow.providers.celery.executors import celery_executor_utils;"
            "print(m.version('apache-airflow-providers-celery'), celery.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == [provider, celery_version]
