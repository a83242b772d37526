"""Rendering a site deployed elsewhere: `render_batch(site_id=...)` with no project on the worker.

CI deploys the template (`hyperframes-airflow deploy`); the DAG only names the site. Against a
real moto server (no AWS account here) through real Airflow (`dag.test()`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from devstack.moto_stack import MotoStack
from hyperframes_airflow.cli import main
from tests.airflow_helpers import run_dag, ti_states
from tests.conftest import REPO

TEMPLATE = REPO / "examples" / "templates" / "welcome"


def _put_batch(stack: MotoStack, key: str, rows: list[dict[str, Any]]) -> str:
    body = "".join(json.dumps(r) + "\n" for r in rows)
    stack.boto3_client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body.encode())
    return f"s3://{stack.bucket}/{key}"


def _manifest(stack: MotoStack, dag_id: str) -> dict[str, Any]:
    s3 = stack.boto3_client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"manifests/{dag_id}/")
    [key] = [o["Key"] for o in listed.get("Contents", [])]
    data: dict[str, Any] = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    return data


def _dag(dag_id: str, site_id: str, batch: str, **options: Any) -> Any:
    from airflow.sdk import DAG

    from hyperframes_airflow.batch import render_batch
    from hyperframes_airflow.contract.config import RenderConfig

    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        render_batch(
            site_id=site_id,
            batch=batch,
            config=RenderConfig(width=640, height=360, fps=30),
            backend="lambda",
            poll_interval=0.3,
            **options,
        )
    return dag


def _deploy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """What CI runs: deploy a copy of the template (then delete it: the DAG never sees it)."""
    project = tmp_path / "ci-checkout"
    shutil.copytree(TEMPLATE, project)
    (project / "build.txt").write_text(str(tmp_path))  # a site of its own, not yet deployed
    assert main(["deploy", str(project)]) == 0
    site_id = capsys.readouterr().out.strip()
    assert main(["deploy", str(project)]) == 0  # idempotent
    assert capsys.readouterr().out.strip() == site_id
    shutil.rmtree(project)
    return site_id


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_dag_renders_a_site_deployed_by_the_cli_without_the_project(
    hf_conn: MotoStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = hf_conn
    site_id = _deploy(tmp_path, capsys)
    key = f"sites/{site_id}/project.tar.gz"
    head = stack.boto3_client("s3").head_object(Bucket=stack.bucket, Key=key)
    assert head["ContentLength"] > 0

    batch = _put_batch(
        stack,
        "batches/site.jsonl",
        [
            {"outputKey": "site/ok.mp4", "variables": {"title": "Hi"}},
            {"outputKey": "site/bad.mp4", "variables": {"title": 5}},  # not a string
        ],
    )
    # The deployed entry file declares its variables: a bad row is rejected by line.
    local = tmp_path / "site.jsonl"
    local.write_bytes(
        stack.boto3_client("s3")
        .get_object(Bucket=stack.bucket, Key="batches/site.jsonl")["Body"]
        .read()
    )
    assert main(["validate", "--site-id", site_id, "--strict-variables", "--json", str(local)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(i["line"], i["field"]) for i in report["issues"] if i["severity"] == "error"] == [
        (2, "variables")
    ]

    stack.reset_calls()
    run = run_dag(_dag("hf_site_render", site_id, batch, strict=False, strict_variables=True))
    assert str(run.state) == "failed"  # line 2 did not render, and the run says so
    manifest = _manifest(stack, "hf_site_render")
    assert manifest["siteId"] == site_id
    assert [(r["inputLine"], r["status"]) for r in manifest["rows"]] == [
        (1, "succeeded"),
        (2, "invalid"),
    ]
    assert 'Variable "title" expected string' in manifest["rows"][1]["error"]
    sent = json.loads(
        stack.boto3_client("stepfunctions").describe_execution(
            executionArn=manifest["rows"][0]["executionArn"]
        )["input"]
    )
    assert sent["ProjectS3Uri"] == f"s3://{stack.bucket}/{key}"
    calls = stack.calls()
    assert calls.get("s3:PutObject", 0) == 1  # the manifest only: no site upload
    assert ti_states(run)[("render_batch.deploy_site", -1)] == "success"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_missing_site_fails_the_run_before_any_render(hf_conn: MotoStack) -> None:
    stack = hf_conn
    batch = _put_batch(stack, "batches/nosite.jsonl", [{"outputKey": "nosite/a.mp4"}])
    stack.reset_calls()
    run = run_dag(_dag("hf_site_missing", "0000deadbeef0000", batch))
    assert str(run.state) == "failed"
    assert stack.calls().get("states:StartExecution", 0) == 0
    manifest = _manifest(stack, "hf_site_missing")
    message = manifest["problems"][-1]["message"]
    assert "0000deadbeef0000 is not deployed" in message
    assert f"s3://{stack.bucket}/sites/0000deadbeef0000/project.tar.gz" in message
    assert ti_states(run)[("render_batch.prepare_batch", -1)] == "failed"


def test_render_batch_needs_a_project_or_a_site() -> None:
    from hyperframes_airflow.batch import render_batch

    with pytest.raises(ValueError, match="project_dir or site_id"):
        render_batch(batch="b.jsonl", config={"width": 640, "height": 360, "fps": 30})
