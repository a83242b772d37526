"""The HyperFrames "site": a content-addressed project upload (`sites/<siteId>/project.tar.gz`).

`site_id` is a byte-compatible port of the Node producer's `hashProjectDir`, so a project deployed
from Airflow and one deployed by `hyperframes lambda deploySite` share one S3 object
(contract §2.2). The tarball only has to be something node-tar can extract (§2.3); it is made
deterministic so a re-upload of the same tree is byte-identical.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from collections.abc import Iterator

__all__ = [
    "SKIP_ROOT_ENTRIES",
    "build_tarball",
    "require_entry_file",
    "site_id",
    "site_key",
]

#: Root-level entries the planner never reads (`PLAN_PROJECT_DIR_SKIP_SEGMENTS` in `plan.ts`).
#: They are skipped only at the project root; a nested `sub/output/` is hashed and packed.
SKIP_ROOT_ENTRIES: frozenset[str] = frozenset(
    {"node_modules", ".git", ".cache", "output", "failures", "dist", ".next", ".turbo"}
)

_CHUNK = 1024 * 1024
StrPath = str | os.PathLike[str]


def _js_sort_key(entry: os.DirEntry[str]) -> bytes:
    # JS `<` on strings compares UTF-16 code units; big-endian UTF-16 bytes sort identically.
    return entry.name.encode("utf-16-be", "surrogatepass")


def _require_dir(project_dir: StrPath) -> str:
    path = os.fspath(project_dir)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"[deploySite] projectDir is not a directory: {path}")
    return path


def _utf8(rel: str) -> bytes:
    try:
        return rel.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Node would read such a name as U+FFFD and then fail to open it: refuse early instead.
        raise ValueError(f"[deploySite] file name is not valid UTF-8: {rel!r}") from exc


def _walk(root: str, rel_dir: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield `(rel, entry)` in `hashProjectDir` order: DFS, per-directory UTF-16 sort, root skips.

    Directories and symlinks are yielded too (the tarball needs them); callers filter by type.
    """
    directory = os.path.join(root, rel_dir) if rel_dir else root
    with os.scandir(directory) as it:
        entries = sorted(it, key=_js_sort_key)
    for entry in entries:
        if not rel_dir and entry.name in SKIP_ROOT_ENTRIES:
            continue
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        yield rel, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, rel)


def site_id(project_dir: StrPath) -> str:
    """The HyperFrames siteId of a project directory: 16 hex chars of a sha256 over its files.

    Hashes `utf8(rel) + b"\\0" + content` for every regular file in walk order. Symlinks, special
    files, modes and mtimes are ignored, exactly like the Node SDK (so editing a symlink's target
    does not change the id).
    """
    root = _require_dir(project_dir)
    digest = hashlib.sha256()
    for rel, entry in _walk(root):
        if not entry.is_file(follow_symlinks=False):
            continue
        digest.update(_utf8(rel))
        digest.update(b"\0")
        with open(entry.path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def site_key(site_id: str) -> str:
    """The S3 key of a site's tarball inside the render bucket."""
    return f"sites/{site_id}/project.tar.gz"


def require_entry_file(project_dir: StrPath, entry: str = "index.html") -> str:
    """Fail before any upload when the producer's entry HTML is missing; return its path.

    The planner reads `<root>/<entryFile>` (default `index.html`) and would otherwise fail inside
    the Plan Lambda after four retries. A symlinked entry is accepted: the planner dereferences.
    """
    root = _require_dir(project_dir)
    path = os.path.join(root, entry)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"[deploySite] project has no {entry} at its root: {path} "
            "(HyperFrames renders the composition from this entry file)"
        )
    return path


def _normalised_info(tar: tarfile.TarFile, path: str, rel: str) -> tarfile.TarInfo | None:
    info = tar.gettarinfo(path, arcname=rel)
    if info is None:  # sockets
        return None
    if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        return None  # FIFOs and device nodes are never part of a composition
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isdir():
        info.mode = 0o755
    elif info.issym():
        info.mode = 0o777
    else:
        info.mode = 0o755 if info.mode & 0o111 else 0o644
    return info


def _write_tar(tar: tarfile.TarFile, root: str, dest: str) -> None:
    for rel, entry in _walk(root):
        _utf8(rel)
        if entry.is_file(follow_symlinks=False) and os.path.realpath(entry.path) == dest:
            continue  # never pack the tarball into itself when it is written inside the project
        info = _normalised_info(tar, entry.path, rel)
        if info is None:
            continue
        if info.isreg():
            with open(entry.path, "rb") as fh:
                tar.addfile(info, fh)
        else:
            tar.addfile(info)


def build_tarball(project_dir: StrPath, dest_path: StrPath) -> int:
    """Write `project.tar.gz` for a site and return its size in bytes.

    Member names are relative to the root (no `./` prefix, which node-tar does not need); the
    root skip list is left out because the planner ignores those entries anyway. Entries are in
    walk order with mtime 0, uid/gid 0, no owner names, normalised modes and a gzip header
    without name or timestamp, so the same tree always yields the same bytes.
    """
    root = _require_dir(project_dir)
    dest = os.fspath(dest_path)
    with open(dest, "wb") as raw:
        dest_real = os.path.realpath(dest)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            _write_tar(tar, root, dest_real)
    return os.stat(dest).st_size


def copy_site(project_dir: StrPath, dest_dir: StrPath) -> int:
    """Copy exactly what the siteId covers (root skip list applied) into `dest_dir`; bytes copied.

    The local backend deploys with it, so a local site holds what a Lambda site's tarball holds.
    """
    root = _require_dir(project_dir)
    dest = os.fspath(dest_dir)
    total = 0
    for rel, entry in _walk(root):
        target = os.path.join(dest, rel)
        if entry.is_dir(follow_symlinks=False):
            os.makedirs(target, exist_ok=True)
        elif entry.is_file(follow_symlinks=False):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(entry.path, "rb") as src, open(target, "wb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    total += len(chunk)
    return total
