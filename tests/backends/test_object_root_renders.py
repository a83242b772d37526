"""Real renders into an object-store root (a moto S3 bucket over HTTP), checked as a user would:
the videos are downloaded from the bucket and probed with ffprobe.

A whole batch through real Airflow (`dag.test()`): the site goes up once as
`sites/<siteId>/project.tar.gz`, the worker unpacks it into its cache, outputs, thumbnails,
records and the manifest land in the bucket with `s3://` URIs, and nothing is written to a
local output directory. Then the reuse rules on the backend itself: a re-run reuses a row's
object only while it is the very object that row wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack.airflow_stack import template_variant
from devstack.moto_stack import MotoStack
from hyperframes_airflow.backends.local import LocalBackend
from hyperframes_airflow.backends.local_cli import Toolchain, probe_video
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.plan import load_project, plan_batch
from hyperframes_airflow.contract.rows import BatchSpec, Lane
from hyperframes_airflow.contract.site import site_id
from hyperframes_airflow.storage import open_batch
from tests.airflow_helpers import run_dag
from tests.requirements import render_toolchain

CONN_ID = "hyperframes_default"
DAG_ID = "hf_reruns"


@pytest.fixture(scope="module")
def toolchain() -> Toolchain:
    """The render toolchain; a test that renders is slow and asks for it."""
    return render_toolchain()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's worker site cache (`HYPERFRAMES_CACHE_DIR`), not the user's ~/.cache."""
    path = tmp_path / "site-cache"
    monkeypatch.setenv("HYPERFRAMES_CACHE_DIR", str(path))
    return path


def _objects(stack: MotoStack, prefix: str) -> dict[str, int]:
    listed = stack.boto3_client("s3").list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    return {o["Key"][len(prefix) :]: int(o["Size"]) for o in listed.get("Contents", [])}


def _get(stack: MotoStack, key: str) -> bytes:
    body: bytes = stack.boto3_client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    return body


def _write_batch(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_batch_renders_into_the_bucket_and_its_manifest_lands_there(
    toolchain: Toolchain, hf_conn: MotoStack, tmp_path: Path, cache_dir: Path
) -> None:
    from airflow.sdk import DAG

    from hyperframes_airflow.batch import render_batch

    project = template_variant(tmp_path / "template", duration_s=1)
    rows: list[dict[str, Any]] = [
        {"outputKey": "videos/ada.mp4", "variables": {"title": "Hi Ada", "accent": "#ff0000"}},
        {"outputKey": "videos/lin.mp4", "variables": {"title": "Hi Lin", "accent": "#0000ff"}},
        {"outputKey": "videos/bo.mp4", "variables": {"title": "Hi Bo"}},
    ]
    batch = _write_batch(tmp_path / "batch.jsonl", rows)
    prefix = "flow-root"
    with DAG(dag_id="hf_object_root_flow", schedule=None, catchup=False) as dag:
        render_batch(
            project_dir=str(project),
            batch=str(batch),
            config=RenderConfig(width=640, height=360, fps=30),
            backend="local",
            conn_id=CONN_ID,
            local_root=f"s3://{hf_conn.bucket}/{prefix}/",
            rows_per_task=2,  # a lane of two (one CLI process) and a lane of one
        )
    run = run_dag(dag)
    assert str(run.state) == "success"

    sid = site_id(project)
    stored = _objects(hf_conn, f"{prefix}/")
    manifests = [k for k in stored if k.startswith("manifests/hf_object_root_flow/")]
    assert len(manifests) == 1, stored
    manifest = json.loads(_get(hf_conn, f"{prefix}/{manifests[0]}"))
    assert manifest["siteId"] == sid and manifest["totals"]["byStatus"] == {"succeeded": 3}
    assert "Hi Ada" not in json.dumps(manifest)  # variables stay in the batch
    assert f"sites/{sid}/project.tar.gz" in stored

    for row, wanted in zip(manifest["rows"], rows, strict=True):
        key = wanted["outputKey"]
        assert row["outputUri"] == f"s3://{hf_conn.bucket}/{prefix}/{key}"
        assert row["bytes"] == stored[key] > 0
        video = tmp_path / "downloaded" / key
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(_get(hf_conn, f"{prefix}/{key}"))
        info = probe_video(video)
        assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (640, 360)
        assert abs(float(info["duration"]) - 1.0) < 0.1 and info["nb_frames"] == 30
        thumb = row["thumbnailUri"]
        assert thumb.startswith(f"s3://{hf_conn.bucket}/{prefix}/.hyperframes/thumbnails/")
        assert _get(hf_conn, thumb.split("/", 3)[3])[:3] == b"\xff\xd8\xff"  # a JPEG
    records = [k for k in stored if k.startswith(".hyperframes/outputs/")]
    assert len(records) == 3
    for key in records:
        record = json.loads(_get(hf_conn, f"{prefix}/{key}"))
        head = hf_conn.boto3_client("s3").head_object(
            Bucket=hf_conn.bucket, Key=f"{prefix}/{record['outputKey']}"
        )
        assert record["etag"] == head["ETag"] and record["bytes"] == head["ContentLength"]
    # The worker rendered from its own unpacked copy, and no output touched the local disk.
    assert site_id(cache_dir / "sites" / sid) == sid
    assert not Path("hyperframes-output").exists() and not (tmp_path / "videos").exists()


def _planned(
    backend: LocalBackend, project: Path, batch: Path, run_id: str
) -> tuple[BatchSpec, Lane]:
    """The batch's spec and its one lane, planned exactly as prepare_batch plans them."""
    composition, sid = load_project(project)
    resolved = backend.resolve(site_id=sid, config=RenderConfig(width=640, height=360, fps=30))
    with open_batch(str(batch)) as handle:
        plan = plan_batch(
            handle,
            config=resolved.config,
            composition=composition,
            site_id=sid,
            dag_id=DAG_ID,
            run_id=run_id,
            strict_variables=False,
            bucket=resolved.digest_bucket,
        )
    spec = BatchSpec(
        backend="local",
        source=str(batch),
        format="mp4",
        site_id=sid,
        project_uri=resolved.project_uri,
        digest_bucket=resolved.digest_bucket,
        config=resolved.config.to_wire(),
        local_root=resolved.local_root,
        source_conn_id=CONN_ID,
    )
    return spec, Lane(rows=[r.ref() for r in plan.rows])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_rerun_reuses_a_rows_object_only_while_it_is_the_one_it_wrote(
    toolchain: Toolchain, hf_conn: MotoStack, tmp_path: Path, cache_dir: Path
) -> None:
    project = template_variant(tmp_path / "template", duration_s=1)
    batch = _write_batch(
        tmp_path / "batch.jsonl", [{"outputKey": "v/ada.mp4", "variables": {"title": "Ada"}}]
    )
    backend = LocalBackend(f"s3://{hf_conn.bucket}/reruns", conn_id=CONN_ID, toolchain=toolchain)
    backend.deploy_site(project, site_id(project))

    def render(run_id: str, **options: Any) -> tuple[dict[str, Any], int]:
        """Render the row's lane in run `run_id`: (its manifest row, CLI processes started)."""
        spec, lane = _planned(backend, project, batch, run_id)
        started: list[int] = []
        rows = backend.render_lane(
            spec,
            lane,
            dag_id=DAG_ID,
            run_id=run_id,
            owner="reruns",
            on_start=started.append,
            timeout_s=240,
            **options,
        )
        assert len(rows) == 1 and rows[0].status == "succeeded", rows
        return rows[0].model_dump(by_alias=True, exclude_none=True), len(started)

    first, renders = render("run-1")
    assert renders == 1 and first["attempt"] == 1
    again, renders = render("run-1")  # the task cleared: its object is provably its own
    assert renders == 0 and again == first

    # Someone overwrites the object (same key, other bytes): rendered again, a second attempt.
    s3 = hf_conn.boto3_client("s3")
    s3.put_object(Bucket=hf_conn.bucket, Key="reruns/v/ada.mp4", Body=b"not the render")
    redone, renders = render("run-1")
    assert renders == 1 and redone["attempt"] == 2 and "replaced" not in redone
    assert _objects(hf_conn, "reruns/v/")["ada.mp4"] == redone["bytes"]

    # Another run writes the same key: it renders, and says whose output it replaced.
    other, renders = render("run-2")
    assert renders == 1 and other["replaced"] == first["executionName"]
    forced, renders = render("run-2", force_rerender=True)
    assert renders == 1 and forced["executionName"] == other["executionName"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_output_the_store_refuses_fails_its_row_and_leaves_no_record(
    toolchain: Toolchain, hf_conn: MotoStack, tmp_path: Path, cache_dir: Path
) -> None:
    """The bucket goes away after the site reached the worker: the render runs, its upload
    fails, and the row says so (a row with no output must never read as succeeded)."""
    s3 = hf_conn.boto3_client("s3")
    s3.create_bucket(Bucket="hf-doomed")
    project = template_variant(tmp_path / "template", duration_s=1)
    batch = _write_batch(tmp_path / "batch.jsonl", [{"outputKey": "v/a.mp4", "variables": {}}])
    backend = LocalBackend("s3://hf-doomed/out", conn_id=CONN_ID, toolchain=toolchain)
    sid = site_id(project)
    backend.deploy_site(project, sid)
    spec, lane = _planned(backend, project, batch, "run-1")
    backend.root.project_dir(sid)  # the worker has the site...
    for listed in s3.list_objects_v2(Bucket="hf-doomed").get("Contents", []):
        s3.delete_object(Bucket="hf-doomed", Key=listed["Key"])
    s3.delete_bucket(Bucket="hf-doomed")  # ...and then the bucket is gone
    started: list[int] = []
    [row] = backend.render_lane(
        spec, lane, dag_id=DAG_ID, run_id="run-1", owner="doomed", on_start=started.append
    )
    assert len(started) == 1  # it did render
    assert row.status == "failed" and row.error == "UPLOAD_FAILED", row
    assert row.cause is not None and "s3://hf-doomed/out" in row.cause
    assert row.output_uri is None and backend.root.read_record("v/a.mp4") is None


def test_rows_of_a_site_the_root_does_not_hold_fail_to_start(
    hf_conn: MotoStack, tmp_path: Path, cache_dir: Path
) -> None:
    """Nothing renders (no toolchain is even looked for) when the site is not in the root."""
    project = template_variant(tmp_path / "template", duration_s=1)
    batch = _write_batch(tmp_path / "batch.jsonl", [{"outputKey": "v/a.mp4", "variables": {}}])
    backend = LocalBackend(f"s3://{hf_conn.bucket}/no-site", conn_id=CONN_ID)
    spec, lane = _planned(backend, project, batch, "run-1")
    [row] = backend.render_lane(spec, lane, dag_id=DAG_ID, run_id="run-1", owner="nosite")
    assert (row.status, row.error) == ("failed-to-start", "SITE_UNAVAILABLE")
    assert row.cause is not None and "is not deployed at s3://" in row.cause


def test_the_environment_can_name_an_object_store_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperframes_airflow.backends import make_backend

    monkeypatch.setenv("HYPERFRAMES_LOCAL_ROOT", "s3://bucket/renders/")
    backend = make_backend("local")
    assert isinstance(backend, LocalBackend) and backend.root.uri == "s3://bucket/renders"
    assert backend.default_manifest_uri("d", "r", "g").startswith("s3://bucket/renders/manifests/")
