"""Where the local backend keeps sites, outputs, records, thumbnails and manifests: its root.

A root is a local directory (`DirectoryRoot`: one machine, or a disk every worker mounts) or an
object store (`ObjectRoot`: `s3://`, `gs://`, `file://` through ObjectStoragePath, for workers on
several machines). Both are laid out like the Lambda bucket, so the backend renders the same way
into either and never asks which one it has:

    sites/<siteId>/...                    the deployed site (a copy, or project.tar.gz)
    <outputKey>                           each row's output, whole or absent
    .hyperframes/outputs/<key hash>.json  which render wrote the output (size, sha256, ETag)
    .hyperframes/thumbnails/<hash>.jpg    its poster frame
    manifests/...                         the run's manifest, by default
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hyperframes_airflow.backends.base import SiteHandle
from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.root_uri import is_root_uri

__all__ = [
    "OutputRoot",
    "OutsideRoot",
    "Published",
    "key_name",
    "open_root",
    "record_key",
    "sha256_file",
    "thumbnail_key",
]

_HASH_CHUNK = 1024 * 1024


class OutsideRoot(ValueError):
    """A path that would land outside the backend's root (`..`, an absolute key, a symlink)."""


@dataclass(frozen=True)
class Published:
    """A row's output once it is in the root: where, how big, and what proves it is this one."""

    uri: str
    bytes: int
    sha256: str
    etag: str | None = None


class OutputRoot(Protocol):
    """What the local backend needs from its root."""

    uri: str
    """The root as the batch spec carries it (a path, or a normalised URI)."""

    def project_uri(self, site_id: str) -> str:
        """Where a deployed site is (what the spec and the manifest say)."""
        ...

    def find_site(self, site_id: str) -> SiteHandle | None:
        """The deployed site, or None."""
        ...

    def site_key(self, site_id: str) -> str:
        """Where the site lives, for messages (a directory, or the tarball's URI)."""
        ...

    def site_composition(self, site_id: str) -> Composition:
        """The composition the deployed site renders (its entry file)."""
        ...

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Put the site in the root unless it is there already."""
        ...

    def project_dir(self, site_id: str) -> Path:
        """A local directory holding the site, for the CLI to render from."""
        ...

    def manifest_uri(self, name: str) -> str:
        """The URI of `manifests/<name>`."""
        ...

    def check_key(self, key: str) -> None:
        """Raise `OutsideRoot` unless `key` names one output inside the root."""
        ...

    def render_path(self, key: str, staging: Path) -> Path:
        """Where the CLI writes `key`'s output: its final place, or a file under `staging`."""
        ...

    def thumbnail_path(self, key: str, staging: Path) -> Path:
        """Where the poster frame of `key` is written (then `publish_thumbnail`)."""
        ...

    def publish(self, rendered: Path, key: str) -> Published:
        """Make the finished output at `rendered` the root's `key`, whole or not at all."""
        ...

    def publish_thumbnail(self, written: Path, key: str) -> str:
        """Store the poster frame written at `written`; its URI."""
        ...

    def exists(self, key: str) -> bool:
        """True when the root holds an output at `key`."""
        ...

    def holds(self, key: str, record: dict[str, Any]) -> bool:
        """True only when the output at `key` is provably the one `record` describes."""
        ...

    def read_record(self, key: str) -> dict[str, Any] | None:
        """The ownership record of `key`; None when missing or unreadable."""
        ...

    def write_record(self, key: str, record: dict[str, Any]) -> None:
        """Write the ownership record of `key` (whole, never half)."""
        ...


def key_name(output_key: str) -> str:
    """A fixed-length name for an output key's record and thumbnail (keys may be long)."""
    return hashlib.sha256(output_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def record_key(output_key: str) -> str:
    return f".hyperframes/outputs/{key_name(output_key)}.json"


def thumbnail_key(output_key: str) -> str:
    return f".hyperframes/thumbnails/{key_name(output_key)}.jpg"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def open_root(root: str | os.PathLike[str], *, conn_id: str | None = None) -> OutputRoot:
    """A `scheme://` root is an object store read through `conn_id`; anything else is a local
    directory (relative paths and `~` resolved, exactly as before object roots existed)."""
    if isinstance(root, str) and is_root_uri(root):
        from hyperframes_airflow.backends.object_root import ObjectRoot

        return ObjectRoot(root, conn_id=conn_id)
    from hyperframes_airflow.backends.dir_root import DirectoryRoot

    return DirectoryRoot(root)
