"""docker/init.sh, run for real against a throwaway Airflow (SQLite) with the venv's `airflow`.

The compose file's airflow-init service runs this same script in the image; here it runs outside
Docker, as a plain-machine or Kubernetes-Job user would run it. Then the compose `moto` profile's
chain (moto-stack.py, then init.sh with the profile's variables) is replayed against a local
moto server, and the example DAG renders a batch through the connection the script wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

INIT = REPO / "docker" / "init.sh"
BIN = Path(sys.executable).parent
ARN = "arn:aws:states:eu-west-1:123456789012:stateMachine:hyperframes-render"


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no inherited Airflow, AWS or HyperFrames settings."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "HYPERFRAMES_"))
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
    )
    env.update(extra)
    return env


def _init(home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INIT)], env=_env(home, **extra), capture_output=True, text=True, timeout=180
    )


def _airflow_json(home: Path, *args: str) -> Any:
    done = subprocess.run(
        [str(BIN / "airflow"), *args, "-o", "json"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:
        return db.execute(sql).fetchall()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_init_migrates_sets_the_pool_and_the_connection_idempotently(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir()

    # No stack named yet (a local-backend deployment): pool only, connection left alone.
    first = _init(home)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "connection hyperframes_default left as it is" in first.stdout
    assert _rows(home, "SELECT pool, slots, include_deferred FROM slot_pool ORDER BY pool") == [
        ("default_pool", 128, 0),
        ("hyperframes_renders", 4, 1),
    ]
    assert _rows(home, "SELECT conn_id FROM connection") == []

    stack = {
        "HYPERFRAMES_BUCKET": "hf-renders",
        "HYPERFRAMES_STATE_MACHINE_ARN": ARN,
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "HYPERFRAMES_POOL_SLOTS": "3",
        "HYPERFRAMES_LAMBDA_MEMORY_MB": "3008",
        "HYPERFRAMES_RESERVED_CONCURRENCY": "8",
        "HYPERFRAMES_AWS_ACCESS_KEY_ID": "",  # empty means unset, as compose passes it
    }
    second = _init(home, **stack)
    assert second.returncode == 0, second.stderr[-3000:]
    (pool,) = _airflow_json(home, "pools", "get", "hyperframes_renders")
    assert (pool["slots"], pool["include_deferred"]) == ("3", "True")
    (conn,) = _airflow_json(home, "connections", "get", "hyperframes_default")
    assert conn["conn_type"] == "aws" and conn["login"] is None and conn["password"] is None
    assert conn["extra_dejson"] == {  # the CLI prints every value as a string
        "bucket_name": "hf-renders",
        "state_machine_arn": ARN,
        "region_name": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:5000",
        "lambda_memory_mb": "3008",
        "reserved_concurrency": "8",
    }

    # Again, unchanged: same rows, nothing duplicated (extras are Fernet-encrypted, so the
    # stored bytes change; the CLI checks below read them back).
    before = _rows(home, "SELECT id, conn_id FROM connection")
    pools = _rows(home, "SELECT id, pool, slots, include_deferred FROM slot_pool")
    third = _init(home, **stack)
    assert third.returncode == 0, third.stderr[-3000:]
    assert _rows(home, "SELECT id, conn_id FROM connection") == before
    assert _rows(home, "SELECT id, pool, slots, include_deferred FROM slot_pool") == pools

    # Another stack source replaces the connection in place (same row), keys included.
    fourth = _init(
        home,
        HYPERFRAMES_STACK_NAME="hf-stack",
        AWS_REGION="eu-west-1",
        HYPERFRAMES_POOL_SLOTS="6",
        HYPERFRAMES_AWS_ACCESS_KEY_ID="AKIATEST",
        HYPERFRAMES_AWS_SECRET_ACCESS_KEY="s3cret",
        HYPERFRAMES_SKIP_MIGRATE="true",
    )
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert "skipping airflow db migrate" in fourth.stdout
    assert "s3cret" not in fourth.stdout + fourth.stderr
    (conn,) = _airflow_json(home, "connections", "get", "hyperframes_default")
    assert conn["id"] == str(before[0][0])
    assert conn["extra_dejson"] == {"stack_name": "hf-stack", "region_name": "eu-west-1"}
    assert (conn["login"], conn["password"]) == ("AKIATEST", "s3cret")
    (pool,) = _airflow_json(home, "pools", "get", "hyperframes_renders")
    assert (pool["slots"], pool["include_deferred"]) == ("6", "True")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HYPERFRAMES_BUCKET": "b"},
            "set both HYPERFRAMES_BUCKET and HYPERFRAMES_STATE_MACHINE_ARN",
        ),
        (
            {"HYPERFRAMES_BUCKET": "b", "HYPERFRAMES_STATE_MACHINE_ARN": "arn:aws:states:x"},
            "must look like arn:aws:states:<region>",
        ),
        (
            {"HYPERFRAMES_BUCKET": "s3://b", "HYPERFRAMES_STATE_MACHINE_ARN": ARN},
            "bare bucket name",
        ),
        (
            {
                "HYPERFRAMES_BUCKET": "b",
                "HYPERFRAMES_STATE_MACHINE_ARN": ARN,
                "AWS_REGION": "us-east-1",
            },
            "the state machine is in eu-west-1 but AWS_REGION is us-east-1",
        ),
        (
            {
                "HYPERFRAMES_BUCKET": "b",
                "HYPERFRAMES_STATE_MACHINE_ARN": ARN,
                "HYPERFRAMES_STACK_NAME": "s",
            },
            "set only one of",
        ),
        ({"HYPERFRAMES_STACK_NAME": "s", "HYPERFRAMES_AWS_ACCESS_KEY_ID": "k"}, "or neither"),
        ({"HYPERFRAMES_STACK_NAME": "s", "HYPERFRAMES_RESERVED_CONCURRENCY": "8x"}, "integer"),
        ({"HYPERFRAMES_POOL_SLOTS": "0"}, "positive integer"),
    ],
)
def test_bad_settings_fail_before_touching_the_database(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    done = _init(tmp_path, **env)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "airflow.db").exists()


# -- the compose moto profile, replayed outside Docker ---------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def moto_endpoint(tmp_path: Path) -> Iterator[str]:
    """A bare moto server (no bucket, no state machine: moto-stack.py creates them)."""
    port = _free_port()
    with open(tmp_path / "moto.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/config", timeout=1).read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and proc.poll() is None, "moto did not start"
                time.sleep(0.1)
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def _moto_profile_env() -> dict[str, str]:
    """The moto-stack service's own variables, from the compose file."""
    compose = yaml.safe_load((REPO / "docker" / "docker-compose.yaml").read_text())
    env = compose["services"]["moto-stack"]["environment"]
    keys = [k for k in env if k.startswith(("HYPERFRAMES_", "AWS_")) and "$" not in str(env[k])]
    return {k: str(env[k]) for k in keys}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_moto_profile_chain_renders_the_example_batch(
    tmp_path: Path, moto_endpoint: str
) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    env = {**_moto_profile_env(), "AWS_ENDPOINT_URL": moto_endpoint}
    env.pop("HYPERFRAMES_SKIP_MIGRATE")  # in compose, airflow-init migrated before this ran
    bucket = env["HYPERFRAMES_BUCKET"]

    # The example batch's first two rows (each deferred render waits out a 10 s poll under
    # `airflow dags test`, so fewer rows keep the test short without changing the chain).
    batch = tmp_path / "welcome.jsonl"
    example = REPO / "examples" / "batches" / "welcome.jsonl"
    batch.write_text("".join(example.read_text().splitlines(keepends=True)[:2]))
    for _ in range(2):  # idempotent, like a restarted `docker compose --profile moto up`
        stack = subprocess.run(
            [sys.executable, str(REPO / "docker" / "moto-stack.py"), str(batch)],
            env=_env(home, **env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stack.returncode == 0, stack.stderr[-3000:]
    init = _init(home, **env)
    assert init.returncode == 0, init.stderr[-3000:]

    conf = {
        "project_dir": str(REPO / "examples" / "templates" / "welcome"),
        "batch": f"s3://{bucket}/batches/{batch.name}",
        "width": 640,
        "height": 360,
    }
    run_env = _env(
        home,
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        # The form's project is a checkout's template: allow it, as a deployment would.
        HYPERFRAMES_TEMPLATES_DIR=str(REPO / "examples" / "templates"),
    )
    done = subprocess.run(
        [str(BIN / "airflow"), "dags", "test", "hyperframes_render_batch", "-c", json.dumps(conf)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="manifests/hyperframes_render_batch/")
    (key,) = [o["Key"] for o in listed["Contents"]]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    rows = [json.loads(line) for line in batch.read_text().splitlines() if line.strip()]
    assert [r["outputKey"] for r in manifest["rows"]] == [r["outputKey"] for r in rows]
    assert {r["status"] for r in manifest["rows"]} == {"succeeded"}
