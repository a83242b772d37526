"""What the batch view may serve: files under the batch's own root, objects by presigned URL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devstack.moto_stack import MotoStack
from hyperframes_airflow.contract.rows import BatchSpec
from hyperframes_airflow.plugins.files import Refused, locate


def _spec(root: Path | None, conn_id: str | None = None) -> BatchSpec:
    return BatchSpec(
        backend="local",
        source="/b.jsonl",
        source_conn_id=conn_id,
        site_id="s",
        project_uri="file:///p",
        digest_bucket="b",
        config={},
        local_root=str(root) if root else None,
    )


def test_only_regular_files_under_the_batch_root_are_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "v").mkdir(parents=True)
    video = root / "v" / "a.mp4"
    video.write_bytes(b"mp4")
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    (root / "v" / "link.mp4").symlink_to(outside)
    spec = _spec(root)
    assert locate(video.as_uri(), spec).path == video.resolve()
    refused = [
        outside.as_uri(),  # outside the root
        f"file://{root}/v/../../secret.txt",  # climbs out
        (root / "v" / "link.mp4").as_uri(),  # a symlink that leads out
        (root / "v").as_uri(),  # a directory
        (root / "v" / "missing.mp4").as_uri(),
        f"file://evil.example{video}",  # another host
        "http://example.com/a.mp4",  # neither file nor s3
        str(video),  # a bare path: not a URI the batch recorded
        None,
    ]
    for uri in refused:
        with pytest.raises(Refused):
            locate(uri, spec)
    with pytest.raises(Refused):  # a batch without a local root serves no file
        locate(video.as_uri(), _spec(None))
    as_uri_root = _spec(None).model_copy(update={"local_root": root.as_uri()})
    assert locate(video.as_uri(), as_uri_root).path == video.resolve()  # a file:// root
    with pytest.raises(Refused):
        locate(outside.as_uri(), as_uri_root)


def test_s3_outputs_are_presigned_through_the_batch_connection(hf_conn: MotoStack) -> None:
    s3 = hf_conn.boto3_client("s3")
    s3.put_object(Bucket=hf_conn.bucket, Key="out/a.mp4", Body=b"the video")
    target = locate(f"s3://{hf_conn.bucket}/out/a.mp4", _spec(None, "hyperframes_default"))
    assert target.path is None and target.url is not None
    assert "Signature" in target.url or "X-Amz-Signature" in target.url
    fetched = httpx.get(target.url, timeout=30)
    assert fetched.status_code == 200 and fetched.content == b"the video"
    with pytest.raises(Refused):
        locate(f"s3://{hf_conn.bucket}", _spec(None, "hyperframes_default"))
