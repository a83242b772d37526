"""A worker's local copy of deployed sites, fetched from an object root once per siteId.

The CLI renders from a directory, and a worker on another machine has only the object store's
`sites/<siteId>/project.tar.gz`. The first render of a site on a machine downloads and unpacks
it into `<cache>/sites/<siteId>/`; every later render there reuses that directory.

A siteId made by `deploy_site` is a content hash (16 hex), so its cached copy never goes stale
(an edited project has another siteId), and it is checked once: the unpacked tree must hash to
its siteId, so a truncated or foreign tarball is never rendered. A site deployed elsewhere under
a chosen name (`render_batch(site_id="release-1")`) can be deployed again under that name, so
its copy is kept per version of the tarball (`<siteId>@<hash of its ETag>`), and each use asks
the store which version is current (one HEAD).

Concurrency-safe: two tasks on one worker (or two workers sharing a cache dir) take an
exclusive `flock` per siteId, so one downloads while the other waits and then reuses it; the
unpacked tree is renamed into place only once complete. The lock is the kernel's: a worker
killed mid-fetch releases it, and the next fetch removes what it left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from hyperframes_airflow.contract.deployed_site import validate_site_id
from hyperframes_airflow.contract.site import site_id as hash_site
from hyperframes_airflow.contract.site import site_key

__all__ = [
    "CACHE_ENV",
    "SiteMismatch",
    "SiteSource",
    "cached_site",
    "default_cache_dir",
    "is_content_id",
]

CACHE_ENV = "HYPERFRAMES_CACHE_DIR"
"""Where a worker keeps its unpacked sites (default: `$XDG_CACHE_HOME/hyperframes-airflow`)."""
_CONTENT_ID = re.compile(r"[0-9a-f]{16}")


class SiteMismatch(ValueError):
    """A site tarball whose content does not hash to the siteId it is stored under."""


class SiteSource(Protocol):
    """Where site tarballs come from (an `ObjectRoot`)."""

    def download(self, key: str, local: Path) -> None: ...

    def key_uri(self, key: str) -> str: ...

    def version(self, key: str) -> str | None:
        """A tag that changes whenever the object is written (None: no such object)."""
        ...


def is_content_id(site_id: str) -> bool:
    """True for siteIds that are a content hash (what `contract.site.site_id` returns)."""
    return _CONTENT_ID.fullmatch(site_id) is not None


def default_cache_dir() -> Path:
    """`$HYPERFRAMES_CACHE_DIR`, else `$XDG_CACHE_HOME/hyperframes-airflow` (`~/.cache/...`)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hyperframes-airflow"


def cached_site(source: SiteSource, site_id: str, cache_dir: Path | None = None) -> Path:
    """The local directory of `site_id`, downloaded from `source` on this machine's first use.

    Raises FileNotFoundError when the site was never deployed to the root, `SiteMismatch`
    when its tarball holds something else, `tarfile.TarError` when it is not a tarball.
    """
    validate_site_id(site_id)
    key = site_key(site_id)
    sites = (cache_dir or default_cache_dir()) / "sites"
    if is_content_id(site_id):
        target = sites / site_id
    else:
        version = source.version(key)
        if version is None:
            raise _not_deployed(source, site_id)
        target = sites / f"{site_id}@{hashlib.sha256(version.encode()).hexdigest()[:16]}"
    if target.is_dir():
        return target
    sites.mkdir(parents=True, exist_ok=True)
    with _exclusive(sites / f".{site_id}.lock"):
        if target.is_dir():  # another task fetched it while this one waited
            return target
        for leftover in sites.glob(f".{site_id}-*"):  # a fetch killed half-way
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{site_id}-", dir=sites))
        try:
            tarball = staging / "project.tar.gz"
            try:
                source.download(key, tarball)
            except FileNotFoundError as exc:
                raise _not_deployed(source, site_id) from exc
            unpacked = staging / "site"
            with tarfile.open(tarball, "r:gz") as tar:
                tar.extractall(unpacked, filter="data")  # no absolute, `..` or device members
            if is_content_id(site_id) and (found := hash_site(unpacked)) != site_id:
                raise SiteMismatch(
                    f"the tarball at {source.key_uri(key)} holds site {found}, "
                    f"not {site_id}; not rendering from it"
                )
            unpacked.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _not_deployed(source: SiteSource, site_id: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"site {site_id} is not deployed at {source.key_uri(site_key(site_id))} "
        "(deploy_site uploads it)"
    )


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path` (waits for the current holder)."""
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
