"""The local backend's object-store root, against a real moto S3 server over HTTP.

What a user relies on when workers share no disk: a key never lands outside the root's prefix;
an output is in the bucket whole or not at all (a multipart upload killed half-way leaves no
object); a machine fetches a site once per siteId even when two tasks want it at once, and
never renders from a tarball that is not that site; and an object is reused only when it is
provably the one its record describes. Nothing here renders (see test_object_root_renders.py).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from devstack.moto_stack import MotoStack
from hyperframes_airflow.backends.object_root import ObjectRoot
from hyperframes_airflow.backends.roots import OutsideRoot, open_root
from hyperframes_airflow.backends.site_cache import SiteMismatch, cached_site
from hyperframes_airflow.contract.root_uri import (
    StoredObject,
    UnsafeKey,
    is_root_uri,
    parse_root_uri,
    proves,
)
from hyperframes_airflow.contract.site import build_tarball, site_id, site_key
from tests.conftest import REPO

TEMPLATE = REPO / "examples" / "templates" / "welcome"
CONN_ID = "hyperframes_default"
MIB = 1024 * 1024


def _root(stack: MotoStack, prefix: str, **options: int) -> ObjectRoot:
    return ObjectRoot(f"s3://{stack.bucket}/{prefix}", conn_id=CONN_ID, **options)  # type: ignore[arg-type]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _child(code: str, *args: str) -> subprocess.Popen[bytes]:
    """A separate Python process (another task, another worker), with this test's environment
    (the moto connection included)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


# -- roots and keys (pure) ----------------------------------------------------------------------


def test_root_uris_are_parsed_once_and_plain_paths_stay_paths() -> None:
    assert parse_root_uri("s3://bucket/a/b/").uri == "s3://bucket/a/b"
    assert parse_root_uri("S3://bucket").key_uri("v/x.mp4") == "s3://bucket/v/x.mp4"
    assert parse_root_uri("gs://b/p").key_uri("x.mp4") == "gs://b/p/x.mp4"
    assert parse_root_uri("file:///srv/out/").key_uri("x.mp4") == "file:///srv/out/x.mp4"
    for bad in ("s3://", "s3:///key", "s3://conn@bucket/p", "s3://b/p?x=1", "file://rel/x"):
        with pytest.raises(ValueError):
            parse_root_uri(bad)
    with pytest.raises(ValueError, match="not a plain folder"):
        parse_root_uri("s3://b/a/../b")
    assert not is_root_uri("/srv/out") and not is_root_uri("C:\\out") and not is_root_uri("out")
    assert is_root_uri("s3://b") and is_root_uri("file:///x")


@pytest.mark.parametrize(
    "key", ["../x.mp4", "a/../../x.mp4", "/abs.mp4", "a//b.mp4", "./x.mp4", "a\\b.mp4", "a\x00.mp4"]
)
def test_a_key_never_leaves_the_roots_prefix(key: str) -> None:
    root = parse_root_uri("s3://bucket/tenant-a")
    with pytest.raises(UnsafeKey):
        root.join(key)
    with pytest.raises(OutsideRoot):
        ObjectRoot("s3://bucket/tenant-a").check_key(key)
    assert root.join("videos/x.mp4") == "tenant-a/videos/x.mp4"


def test_only_the_recorded_size_and_tag_prove_an_object() -> None:
    record = {"bytes": 10, "sha256": "s" * 64, "etag": '"abc"'}
    never = _raise_if_called
    assert proves(record, StoredObject(10, '"abc"'), never)
    assert not proves(record, StoredObject(10, '"other"'), never)  # rewritten, same size
    assert not proves(record, StoredObject(11, '"abc"'), never)
    # A store without tags: the content's hash decides, and is read only then.
    assert proves(record, StoredObject(10), lambda: "s" * 64)
    assert not proves(record, StoredObject(10), lambda: "t" * 64)
    assert not proves({"bytes": 10}, StoredObject(10), lambda: "s" * 64)
    assert not proves({}, StoredObject(0, '"abc"'), never)


def _raise_if_called() -> str:
    raise AssertionError("the content hash was read although the tags decide")


# -- uploads --------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_big_output_goes_up_in_parts_and_lands_whole(hf_conn: MotoStack, tmp_path: Path) -> None:
    root = _root(hf_conn, "multipart", multipart_chunk_bytes=5 * MIB)
    video = tmp_path / "big.mp4"
    video.write_bytes(os.urandom(12 * MIB + 123))
    hf_conn.reset_calls()
    stored = root.upload(video, "videos/big.mp4")
    calls = hf_conn.reset_calls()
    assert calls["s3:CreateMultipartUpload"] == 1 and calls["s3:CompleteMultipartUpload"] == 1
    assert calls["s3:UploadPart"] == 3 and calls["s3:PutObject"] == 0
    head = hf_conn.boto3_client("s3").head_object(
        Bucket=hf_conn.bucket, Key="multipart/videos/big.mp4"
    )
    assert stored == StoredObject(video.stat().st_size, head["ETag"])
    assert head["ContentType"] == "video/mp4"
    back = tmp_path / "back.mp4"
    root.download("videos/big.mp4", back)
    assert _sha256(back) == _sha256(video)

    small = tmp_path / "small.mp4"
    small.write_bytes(b"x" * 1000)
    root.upload(small, "videos/small.mp4")
    calls = hf_conn.reset_calls()
    assert calls["s3:PutObject"] == 1 and calls["s3:CreateMultipartUpload"] == 0


@pytest.mark.timeout(180)
def test_an_upload_killed_half_way_leaves_no_object(hf_conn: MotoStack, tmp_path: Path) -> None:
    """A worker dying mid-upload (SIGKILL: no cleanup runs) must not leave half a video where
    a reader, or the next run's reuse check, would find it."""
    s3 = hf_conn.boto3_client("s3")
    key = "killed/videos/huge.mp4"
    video = tmp_path / "huge.mp4"
    with video.open("wb") as handle:
        handle.truncate(400 * MIB)  # sparse: 80 parts of 5 MiB
    child = _child(
        "import sys; from pathlib import Path; "
        "from hyperframes_airflow.backends.object_root import ObjectRoot; "
        "ObjectRoot(sys.argv[1], conn_id='hyperframes_default', multipart_chunk_bytes=5 << 20)"
        ".upload(Path(sys.argv[2]), 'videos/huge.mp4')",
        f"s3://{hf_conn.bucket}/killed",
        str(video),
    )
    upload_id = None
    parts = 0
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and child.poll() is None:
            uploads = s3.list_multipart_uploads(Bucket=hf_conn.bucket, Prefix=key).get("Uploads")
            if uploads:
                upload_id = uploads[0]["UploadId"]
                listed = s3.list_parts(Bucket=hf_conn.bucket, Key=key, UploadId=upload_id)
                parts = len(listed.get("Parts", []))
                if parts:
                    break
            time.sleep(0.02)
        assert child.poll() is None, "the upload finished before it could be killed"
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert upload_id is not None and parts >= 1, "no part was uploaded before the kill"
        print(f"killed after {parts} of 80 parts")
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=hf_conn.bucket, Key=key)
        listed_keys = s3.list_objects_v2(Bucket=hf_conn.bucket, Prefix="killed/").get("Contents")
        assert listed_keys is None
        assert (
            ObjectRoot(f"s3://{hf_conn.bucket}/killed", conn_id=CONN_ID).head("videos/huge.mp4")
            is None
        )
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        if upload_id is not None:  # what a bucket's AbortIncompleteMultipartUpload rule does
            s3.abort_multipart_upload(Bucket=hf_conn.bucket, Key=key, UploadId=upload_id)


def test_a_file_root_renames_into_place_and_refuses_a_link_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "store"
    (base / "videos").mkdir(parents=True)
    (base / "videos" / "escape").symlink_to(outside)
    root = open_root(base.as_uri())
    assert isinstance(root, ObjectRoot)
    video = tmp_path / "x.mp4"
    video.write_bytes(b"video")
    published = root.publish(video, "videos/x.mp4")
    assert published.uri == (base / "videos" / "x.mp4").as_uri()
    assert (base / "videos" / "x.mp4").read_bytes() == b"video"
    assert sorted(p.name for p in (base / "videos").iterdir()) == ["escape", "x.mp4"]  # no temp
    assert root.holds("videos/x.mp4", {"bytes": 5, "sha256": _sha256(video)})
    assert not root.holds("videos/x.mp4", {"bytes": 5, "sha256": "0" * 64})
    with pytest.raises(OutsideRoot):
        root.publish(video, "videos/escape/x.mp4")
    assert list(outside.iterdir()) == []


def test_a_plain_path_root_is_the_directory_it_always_was(tmp_path: Path) -> None:
    from hyperframes_airflow.backends.dir_root import DirectoryRoot

    root = open_root(str(tmp_path / "out"))
    assert isinstance(root, DirectoryRoot) and root.uri == str((tmp_path / "out").resolve())
    with pytest.raises(OutsideRoot):
        root.check_key("../x.mp4")


# -- the site cache ------------------------------------------------------------------------------

_FETCH = (
    "import sys; from pathlib import Path; "
    "from hyperframes_airflow.backends.object_root import ObjectRoot; "
    "from hyperframes_airflow.backends.site_cache import cached_site; "
    "print(cached_site(ObjectRoot(sys.argv[1], conn_id='hyperframes_default'), sys.argv[2], "
    "Path(sys.argv[3])))"
)


@pytest.mark.timeout(180)
def test_a_machine_fetches_a_site_once_even_for_two_tasks_at_once(
    hf_conn: MotoStack, tmp_path: Path
) -> None:
    root = _root(hf_conn, "cache")
    sid = site_id(TEMPLATE)
    handle = root.deploy_site(TEMPLATE, sid)
    assert handle.uploaded and handle.project_uri == f"s3://{hf_conn.bucket}/cache/{site_key(sid)}"
    assert not root.deploy_site(TEMPLATE, sid).uploaded  # once per content hash
    from hyperframes_airflow.contract.composition import read_composition

    assert root.site_composition(sid) == read_composition(TEMPLATE)  # read from the tarball
    uri = f"s3://{hf_conn.bucket}/cache"
    hf_conn.reset_calls()
    # Two tasks of one worker (one cache dir), started together, then a second machine.
    one = [_child(_FETCH, uri, sid, str(tmp_path / "worker-a")) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in one]
    assert all(p.returncode == 0 for p in one), outputs
    assert hf_conn.calls()["s3:GetObject"] == 1, hf_conn.calls()
    other = _child(_FETCH, uri, sid, str(tmp_path / "worker-b"))
    out_b = other.communicate(timeout=120)[0].decode()
    assert other.returncode == 0, out_b
    assert hf_conn.calls()["s3:GetObject"] == 2
    for worker in ("worker-a", "worker-b"):
        cached = tmp_path / worker / "sites" / sid
        assert str(cached) in (outputs[0] if worker == "worker-a" else out_b)
        assert site_id(cached) == sid  # the very site, byte for byte
        leftovers = [p.name for p in (tmp_path / worker / "sites").iterdir()]
        assert sorted(leftovers) == sorted([sid, f".{sid}.lock"])


def test_a_tarball_that_is_not_its_site_is_never_rendered(
    hf_conn: MotoStack, tmp_path: Path
) -> None:
    root = _root(hf_conn, "mismatch")
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("<html>someone else's site</html>")
    tarball = tmp_path / "project.tar.gz"
    build_tarball(other, tarball)
    sid = site_id(TEMPLATE)
    root.upload(tarball, site_key(sid))  # the template's siteId, another project's content
    cache = tmp_path / "cache"
    with pytest.raises(SiteMismatch, match=f"holds site {site_id(other)}, not {sid}"):
        cached_site(root, sid, cache)
    assert not (cache / "sites" / sid).exists()

    truncated = tmp_path / "truncated.tar.gz"
    build_tarball(TEMPLATE, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    root.upload(truncated, site_key(sid))
    with pytest.raises((tarfile.TarError, EOFError, OSError)):
        cached_site(root, sid, cache)
    assert not (cache / "sites" / sid).exists()
    with pytest.raises(FileNotFoundError, match="not deployed"):
        cached_site(root, "0123456789abcdef", cache)


def test_an_object_is_reused_only_while_it_is_the_one_recorded(
    hf_conn: MotoStack, tmp_path: Path
) -> None:
    root = _root(hf_conn, "reuse")
    first = tmp_path / "a.mp4"
    first.write_bytes(b"A" * 2048)
    published = root.publish(first, "v/a.mp4")
    assert published.etag is not None and published.sha256 == _sha256(first)
    record = {"bytes": published.bytes, "sha256": published.sha256, "etag": published.etag}
    root.write_record("v/a.mp4", {"row": {}, **record})
    assert root.read_record("v/a.mp4") == {"row": {}, **record}
    assert root.holds("v/a.mp4", record)
    # Another writer replaces it with the same number of bytes: no longer provably ours.
    second = tmp_path / "b.mp4"
    second.write_bytes(b"B" * 2048)
    root.upload(second, "v/a.mp4")
    assert not root.holds("v/a.mp4", record)
    assert not root.holds("v/missing.mp4", record)
    assert root.read_record("v/missing.mp4") is None


def test_a_site_deployed_under_a_chosen_name_is_fetched_again_when_redeployed(
    hf_conn: MotoStack, tmp_path: Path
) -> None:
    """`render_batch(site_id="release-1")`: the name is not a content hash, so the same name
    may hold new content after a redeploy, and a worker must not keep rendering the old one."""
    root = _root(hf_conn, "named")
    cache = tmp_path / "cache"
    versions = []
    for title in ("first", "second"):
        project = tmp_path / title
        project.mkdir()
        (project / "index.html").write_text(f"<html><body>{title}</body></html>")
        tarball = tmp_path / f"{title}.tar.gz"
        build_tarball(project, tarball)
        root.upload(tarball, site_key("release-1"))  # what `hyperframes-airflow deploy` does
        cached = cached_site(root, "release-1", cache)
        assert (cached / "index.html").read_text() == f"<html><body>{title}</body></html>"
        assert cached_site(root, "release-1", cache) == cached  # the same version: reused
        versions.append(cached)
    assert versions[0] != versions[1] and versions[0].is_dir()  # a running render keeps its copy
    with pytest.raises(FileNotFoundError, match="release-2 is not deployed"):
        cached_site(root, "release-2", cache)
