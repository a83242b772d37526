"""Test-wide set-up: a private SQLite Airflow home, created before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="hf-airflow-test-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("HYPERFRAMES_RENDERER_HOME", str(REPO / ".renderer"))
(_HOME / "dags").mkdir()


# Fixtures shared by the AWS tests and the DAG flows: one real moto server per session, started
# only when a test asks for it (moto stands in for AWS: there is no AWS account here).
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from devstack.moto_stack import MotoStack  # noqa: E402


@pytest.fixture(scope="session")
def moto_stack() -> Iterator[MotoStack]:
    """The server process (about 4 s to start, mostly moto's lazy imports), calls counted."""
    with MotoStack(count_calls=True) as stack:
        yield stack


@pytest.fixture
def hf_conn(moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch) -> MotoStack:
    """`AIRFLOW_CONN_HYPERFRAMES_DEFAULT` pointing at the moto stack for this test."""
    for key, value in moto_stack.airflow_conn_env().items():
        monkeypatch.setenv(key, value)
    forget_object_stores()
    return moto_stack


def forget_object_stores() -> None:
    """ObjectStoragePath caches one file system per (protocol, conn_id) for the process's life.
    Tasks run in fresh processes in production, but here one pytest process runs DAGs against
    several moto servers under the same conn id: drop the cache so each sees its own server."""
    import fsspec
    from airflow.sdk.io import store

    store._STORE_CACHE.clear()
    classes = [fsspec.AbstractFileSystem]
    while classes:
        cls = classes.pop()
        cls.clear_instance_cache()
        classes.extend(cls.__subclasses__())
