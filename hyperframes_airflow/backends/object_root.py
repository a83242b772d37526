"""The local backend's root in an object store (`s3://`, `gs://`, `file://`), for workers that
share no disk: Celery or Kubernetes workers on several machines.

Everything goes through `ObjectStoragePath` with the batch's connection (its credentials and
endpoint): the site is uploaded once as `sites/<siteId>/project.tar.gz` (the tarball the Lambda
backend uploads), each worker fetches and unpacks it once per siteId into a local cache
(`site_cache`), the CLI renders into a local temp dir, and only the finished file is uploaded:
one PUT, or a multipart upload above `multipart_chunk_bytes`. Both are atomic on S3 and GCS (an
object appears whole when the PUT or CompleteMultipartUpload returns, and a killed upload leaves
no object), so a reader never sees a partial video. A `file://` root has no such PUT, so it
writes a hidden temp file beside the target and renames it.

Each output's record keeps the object's size, sha256 and ETag after upload: a re-run reuses a
row's output only when the object still has that size and ETag (or, on stores without one, that
sha256), i.e. when it is provably the object that row wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hyperframes_airflow.backends.base import SiteHandle
from hyperframes_airflow.backends.roots import (
    OutsideRoot,
    Published,
    record_key,
    sha256_file,
    thumbnail_key,
)
from hyperframes_airflow.backends.site_cache import cached_site
from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.deployed_site import read_composition_from_tarball
from hyperframes_airflow.contract.root_uri import (
    StoredObject,
    UnsafeKey,
    parse_root_uri,
    proves,
)
from hyperframes_airflow.contract.site import build_tarball, site_key

__all__ = ["DEFAULT_MULTIPART_CHUNK_BYTES", "ObjectRoot"]

#: Outputs above this go up as a multipart upload of parts this size (S3 allows 10,000 parts).
DEFAULT_MULTIPART_CHUNK_BYTES = 64 * 1024 * 1024
_LOCAL_PROTOCOLS = frozenset({"file", "local"})
_HASH_CHUNK = 1024 * 1024


class ObjectRoot:
    """Sites, outputs, records, thumbnails and manifests under an object-store URI.

    :param uri: The root, e.g. `s3://bucket/prefix` (`gs://`, `file:///abs/path` too).
    :param conn_id: The Airflow connection whose credentials and endpoint reach the store.
    :param cache_dir: The worker's site cache (default: `site_cache.default_cache_dir()`).
    :param multipart_chunk_bytes: Outputs above this size are uploaded in parts of this size.
    """

    def __init__(
        self,
        uri: str,
        *,
        conn_id: str | None = None,
        cache_dir: Path | None = None,
        multipart_chunk_bytes: int = DEFAULT_MULTIPART_CHUNK_BYTES,
    ) -> None:
        self.root = parse_root_uri(uri)
        self.uri = self.root.uri
        self.conn_id = conn_id
        self.cache_dir = cache_dir
        self.multipart_chunk_bytes = multipart_chunk_bytes
        self._base: Any = None

    @property
    def base(self) -> Any:
        """The root as an `ObjectStoragePath` (built on first use: Airflow is imported then)."""
        if self._base is None:
            from airflow.sdk import ObjectStoragePath

            self._base = ObjectStoragePath(self.uri, conn_id=self.conn_id)
        return self._base

    @property
    def fs(self) -> Any:
        """The store's fsspec file system, authenticated through the connection."""
        return self.base.fs

    @property
    def _local(self) -> bool:
        return self.root.scheme in _LOCAL_PROTOCOLS

    # -- keys --------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        """The file system path of `key` (`bucket/prefix/key`, or `/abs/path/key`)."""
        try:
            inner = self.root.join(key)
        except UnsafeKey as exc:
            raise OutsideRoot(str(exc)) from exc
        if self._local:
            path = "/" + inner
            real_root = os.path.realpath("/" + self.root.prefix)
            if not os.path.realpath(path).startswith(real_root.rstrip("/") + "/"):
                raise OutsideRoot(f"{key!r} resolves outside the local root {real_root}")
            return path
        return f"{self.root.container}/{inner}"

    def key_uri(self, key: str) -> str:
        """The URI users see for `key` (`s3://bucket/prefix/key`): the manifest's `outputUri`."""
        self._path(key)
        return self.root.key_uri(key)

    # -- objects -----------------------------------------------------------------------------

    def head(self, key: str) -> StoredObject | None:
        """Size and identity tag of the object at `key`, asked of the store (never cached)."""
        path = self._path(key)
        try:
            self.fs.invalidate_cache(path)
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        return StoredObject(size=int(info.get("size") or 0), etag=_identity(info))

    def upload(self, local: Path, key: str) -> StoredObject:
        """Store the file at `local` as `key`, atomically; what the store then says of it."""
        path = self._path(key)
        if self._local:
            _write_then_rename(path, lambda partial: self.fs.put_file(str(local), partial))
        else:
            self.fs.put_file(str(local), path, chunksize=self.multipart_chunk_bytes)
        stored = self.head(key)
        if stored is None:
            raise FileNotFoundError(f"{self.root.key_uri(key)} is missing right after its upload")
        return stored

    def version(self, key: str) -> str | None:
        """A tag that changes whenever `key` is written: its ETag, else its content's sha256
        (`file://`); None when there is no such object."""
        stored = self.head(key)
        if stored is None:
            return None
        return stored.etag or self.content_sha256(key)

    def download(self, key: str, local: Path) -> None:
        """Copy the object at `key` to the local file `local`."""
        self.fs.get_file(self._path(key), str(local))

    def content_sha256(self, key: str) -> str:
        """The sha256 of the object's bytes, streamed (for stores without an identity tag)."""
        digest = hashlib.sha256()
        with self.fs.open(self._path(key), "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def read_json(self, key: str) -> Any:
        """The JSON document at `key`; None when missing or not JSON."""
        try:
            data = self.fs.cat_file(self._path(key))
            return json.loads(data)
        except (FileNotFoundError, ValueError):
            return None

    def write_json(self, key: str, doc: Any) -> None:
        """Write a small JSON document whole (one PUT; temp file and rename on `file://`)."""
        data = json.dumps(doc).encode("utf-8")
        path = self._path(key)
        if self._local:
            _write_then_rename(path, lambda partial: self.fs.pipe_file(partial, data))
        else:
            self.fs.pipe_file(path, data)

    # -- OutputRoot: sites -------------------------------------------------------------------

    def project_uri(self, site_id: str) -> str:
        return self.key_uri(site_key(site_id))

    def find_site(self, site_id: str) -> SiteHandle | None:
        stored = self.head(site_key(site_id))
        if stored is None:
            return None
        return SiteHandle(site_id, self.project_uri(site_id), uploaded=False, bytes=stored.size)

    def site_key(self, site_id: str) -> str:
        return self.project_uri(site_id)

    def site_composition(self, site_id: str) -> Composition:
        """Stream the site tarball from the store and parse its entry file (nothing else)."""
        with self.fs.open(self._path(site_key(site_id)), "rb") as handle:
            return read_composition_from_tarball(handle)

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Upload `sites/<siteId>/project.tar.gz` unless it is there (the Lambda layout)."""
        found = self.find_site(site_id)
        if found is not None:
            return found
        with tempfile.TemporaryDirectory(prefix="hf-deploy-site-") as tmp:
            tarball = Path(tmp) / "project.tar.gz"
            size = build_tarball(project_dir, tarball)
            self.upload(tarball, site_key(site_id))
        return SiteHandle(site_id, self.project_uri(site_id), uploaded=True, bytes=size)

    def project_dir(self, site_id: str) -> Path:
        """The site unpacked in this worker's cache (fetched once per siteId per machine)."""
        return cached_site(self, site_id, self.cache_dir)

    def manifest_uri(self, name: str) -> str:
        return self.key_uri(f"manifests/{name}")

    # -- OutputRoot: outputs -----------------------------------------------------------------

    def check_key(self, key: str) -> None:
        self._path(key)

    def render_path(self, key: str, staging: Path) -> Path:
        self._path(key)
        return staging / key.rpartition("/")[2]  # the key's own name: its extension, its type

    def thumbnail_path(self, key: str, staging: Path) -> Path:
        return staging / "thumbnail.jpg"

    def publish(self, rendered: Path, key: str) -> Published:
        sha256 = sha256_file(rendered)
        stored = self.upload(rendered, key)
        return Published(uri=self.key_uri(key), bytes=stored.size, sha256=sha256, etag=stored.etag)

    def publish_thumbnail(self, written: Path, key: str) -> str:
        target = thumbnail_key(key)
        self.upload(written, target)
        return self.key_uri(target)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def holds(self, key: str, record: dict[str, Any]) -> bool:
        stored = self.head(key)
        if stored is None:
            return False
        return proves(record, stored, lambda: self.content_sha256(key))

    def read_record(self, key: str) -> dict[str, Any] | None:
        data = self.read_json(record_key(key))
        return data if isinstance(data, dict) else None

    def write_record(self, key: str, record: dict[str, Any]) -> None:
        self.write_json(record_key(key), record)


def _write_then_rename(path: str, write: Callable[[str], None]) -> None:
    """A `file://` store has no atomic PUT: write a hidden sibling, then rename it into place."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    partial = os.path.join(parent, f".{os.path.basename(path)}.partial-{uuid.uuid4().hex}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _identity(info: dict[str, Any]) -> str | None:
    """The store's tag for this version of the object: S3's ETag, GCS's generation."""
    for field in ("ETag", "generation", "etag"):
        value = info.get(field)
        if value not in (None, ""):
            return str(value)
    return None
