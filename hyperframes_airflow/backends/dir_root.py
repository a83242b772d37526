"""The local backend's root as a local directory: one machine, or a disk every worker mounts.

Sites are copied to `sites/<siteId>/` once per content hash (atomically: a staging copy is
renamed into place); the CLI writes each output straight to `<root>/<outputKey>` through a
partial file it renames when done, so a reader never sees half a video. Every path is resolved
and must stay inside the root, so neither a `..` key nor a symlink in the root can write
outside it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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
from hyperframes_airflow.contract.composition import Composition, read_composition
from hyperframes_airflow.contract.root_uri import StoredObject, proves
from hyperframes_airflow.contract.site import copy_site

__all__ = ["DirectoryRoot", "write_json_atomic"]


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write a small JSON document so a reader (or a crash) never leaves half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DirectoryRoot:
    """Sites, outputs, records and thumbnails under one local directory.

    :param root: The directory (created as needed; relative paths and `~` are resolved).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).expanduser().resolve()
        self.uri = str(self.path)

    def confined(self, key: str) -> Path:
        """`<root>/<key>`, refusing anything that resolves outside the root."""
        candidate = (self.path / key).resolve()
        if candidate == self.path or self.path not in candidate.parents:
            raise OutsideRoot(f"{key!r} resolves outside the local root {self.path}")
        return candidate

    def site_dir(self, site_id: str) -> Path:
        return self.confined(f"sites/{site_id}")

    # -- sites -------------------------------------------------------------------------------

    def project_uri(self, site_id: str) -> str:
        return self.site_dir(site_id).as_uri()

    def find_site(self, site_id: str) -> SiteHandle | None:
        target = self.site_dir(site_id)
        if not target.is_dir():
            return None
        return SiteHandle(site_id, target.as_uri(), uploaded=False, bytes=_tree_bytes(target))

    def site_key(self, site_id: str) -> str:
        return str(self.site_dir(site_id))

    def site_composition(self, site_id: str) -> Composition:
        """A local site is a copy of the project: read its entry file."""
        return read_composition(self.site_dir(site_id))

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Copy the project to `sites/<siteId>/` unless that content is already there."""
        found = self.find_site(site_id)
        if found is not None:
            return found
        target = self.site_dir(site_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{site_id}-", dir=target.parent))
        try:
            size = copy_site(project_dir, staging)
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():  # a concurrent deploy of the same site won the race
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return SiteHandle(site_id, target.as_uri(), uploaded=True, bytes=size)

    def project_dir(self, site_id: str) -> Path:
        return self.site_dir(site_id)

    def manifest_uri(self, name: str) -> str:
        return (self.path / "manifests" / name).as_uri()

    # -- outputs -----------------------------------------------------------------------------

    def check_key(self, key: str) -> None:
        self.confined(key)

    def render_path(self, key: str, staging: Path) -> Path:
        return self.confined(key)  # the CLI renames its partial file into place

    def thumbnail_path(self, key: str, staging: Path) -> Path:
        return self.path / thumbnail_key(key)

    def publish(self, rendered: Path, key: str) -> Published:
        size = rendered.stat().st_size
        return Published(uri=rendered.as_uri(), bytes=size, sha256=sha256_file(rendered))

    def publish_thumbnail(self, written: Path, key: str) -> str:
        return written.as_uri()

    def exists(self, key: str) -> bool:
        return self.confined(key).exists()

    def holds(self, key: str, record: dict[str, Any]) -> bool:
        target = self.confined(key)
        try:
            stored = StoredObject(size=target.stat().st_size)
        except OSError:
            return False
        return proves(record, stored, lambda: sha256_file(target))

    # -- records -----------------------------------------------------------------------------

    def read_record(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.path / record_key(key)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_record(self, key: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.path / record_key(key), record)


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
