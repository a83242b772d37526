"""A batch that did not render is a failed run, with a manifest that says why.

Each case is a real DAG run (`dag.test()`, SQLite): prepare_batch fails for a reason a user
makes every day (the upstream file never arrived, an empty file, a bad config, a project that is
not there, a composition whose cost cannot be known), and the run must end `failed`, not green,
with the reason in the manifest. Lambda cases run against a real moto server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack.moto_stack import MotoStack
from tests.airflow_helpers import run_dag, ti_states
from tests.conftest import REPO

TEMPLATE = REPO / "examples" / "templates" / "welcome"


def _dag(dag_id: str, **options: Any) -> Any:
    from airflow.sdk import DAG

    from hyperframes_airflow.batch import render_batch

    options.setdefault("config", {"width": 640, "height": 360, "fps": 30})
    options.setdefault("project_dir", str(TEMPLATE))
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        render_batch(**options)
    return dag


def _local_manifest(root: Path, dag_id: str) -> dict[str, Any]:
    [path] = sorted((root / "manifests" / dag_id).rglob("*.json"))
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-batch", "batch file not found"),
        ("empty-batch", "Empty batch"),
        ("directory-batch", "not a JSONL file"),
        ("bad-config", "config.fps: must be one of 24, 30, 60; got 25"),
        ("missing-project", "projectDir is not a directory"),
    ],
)
def test_a_batch_that_cannot_be_prepared_fails_the_run_with_a_manifest(
    tmp_path: Path, case: str, expected: str
) -> None:
    root = tmp_path / "root"
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"outputKey": "a.mp4"}) + "\n")
    options: dict[str, Any] = {"batch": str(batch), "backend": "local", "local_root": str(root)}
    if case == "missing-batch":
        options["batch"] = str(tmp_path / "digests" / "2026-12-01.jsonl")  # never arrived
    elif case == "empty-batch":
        batch.write_text("\n\n")
    elif case == "directory-batch":
        options["batch"] = str(tmp_path)
    elif case == "bad-config":
        options["config"] = {"width": 640, "height": 360, "fps": 25}
    elif case == "missing-project":
        options["project_dir"] = str(tmp_path / "no-such-project")
    dag_id = f"hf_truth_{case.replace('-', '_')}"
    run = run_dag(_dag(dag_id, **options))

    assert str(run.state) == "failed"
    states = ti_states(run)
    assert states[("render_batch.prepare_batch", -1)] == "failed"
    assert states[("render_batch.collect_manifest", -1)] == "failed"
    manifest = _local_manifest(root, dag_id)
    messages = [p["message"] for p in manifest["problems"] if p["severity"] == "error"]
    assert any(expected in m for m in messages), messages
    assert not (root / "sites").exists()  # nothing was deployed


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_unknown_cost_never_passes_the_gate(hf_conn: MotoStack, tmp_path: Path) -> None:
    """A composition with no declared duration: its cost cannot be known before rendering, so a
    cost limit (even 0) stops the batch before anything is deployed or started."""
    stack = hf_conn
    project = tmp_path / "no-duration"
    project.mkdir()
    html = (TEMPLATE / "index.html").read_text()
    (project / "index.html").write_text(
        html.replace('data-duration="2"', "").replace('data-start="0"', "")
    )
    body = json.dumps({"outputKey": "gate/a.mp4"}) + "\n"
    stack.boto3_client("s3").put_object(
        Bucket=stack.bucket, Key="batches/gate0.jsonl", Body=body.encode()
    )
    stack.reset_calls()
    run = run_dag(
        _dag(
            "hf_truth_unknown_cost",
            project_dir=str(project),
            batch=f"s3://{stack.bucket}/batches/gate0.jsonl",
            backend="lambda",
            max_cost_usd=0,
        )
    )
    assert str(run.state) == "failed"
    calls = stack.calls()
    assert calls.get("states:StartExecution", 0) == 0
    assert calls.get("s3:PutObject", 0) == 1  # the manifest: no site
    s3 = stack.boto3_client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix="manifests/hf_truth_unknown_cost/")
    manifest = json.loads(
        s3.get_object(Bucket=stack.bucket, Key=listed["Contents"][0]["Key"])["Body"].read()
    )
    gate = manifest["estimate"]["gate"]
    assert gate["status"] == "needs-approval" and gate["costKnown"] is False
    assert "cost unknown" in gate["message"]
    assert [r["status"] for r in manifest["rows"]] == ["skipped"]


def test_a_blank_cost_limit_from_a_template_fails_closed() -> None:
    from hyperframes_airflow.contract.options import parse_cost_limit

    for blank in ("", "None", "none", "null", "  "):
        with pytest.raises(ValueError, match="max_cost_usd rendered to"):
            parse_cost_limit(blank)
    assert parse_cost_limit(None) is None and parse_cost_limit("2.5") == 2.5


def test_manifest_names_are_unique_per_run_and_group() -> None:
    from hyperframes_airflow.backends.base import manifest_name

    runs = [
        "manual__2026-12-01T10:00:00+00:00",
        "manual__2026-12-01T10_00_00_00_00",
        "a b",
        "a/b",
        "a_b",
    ]
    names = {manifest_name("dag", run, "render_batch") for run in runs}
    assert len(names) == len(runs)  # ids that sanitise alike still get their own file
    assert manifest_name("dag", "r", "welcome") != manifest_name("dag", "r", "digest")
    assert all("/" not in name.split("/", 2)[2] for name in names)
