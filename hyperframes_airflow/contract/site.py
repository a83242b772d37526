"""The HyperFrames "site": a content-addressed project upload (`sites/<siteId>/project.tar.gz`).

`site_id` is a port of the Node producer's `hashProjectDir` (contract §2.2), byte-compatible for
every project made of plain files and folders, so a project deployed from Airflow and one
deployed by `hyperframes lambda deploySite` share one S3 object. The tarball only has to be
something node-tar can extract (§2.3); it is deterministic, so the same tree gives the same bytes.

One walk (`site_entries`) decides what a site is, and the hash, the tarball and a local copy
(`copy_site`) all take exactly that:

- the root skip list (`SKIP_ROOT_ENTRIES`) applies to root entries, links included;
- a symlink to a file or folder inside the project counts as that file or folder (dereferenced,
  as the planner's `cpSync(..., {dereference: true})` renders it);
- a symlink that points outside the project, dangles, or loops, and any FIFO, socket or device,
  is refused with `UnsafeSiteEntry` naming it: following it would pack the machine's files
  (`/etc/passwd`), never end (`/dev/zero`, a link to `.`), or block.

**Deliberate difference from Node.** `hashProjectDir` skips symlinks, so there editing a linked
file never changes the siteId and a stale tarball is reused. Here a project with internal links
hashes the content it renders, so its siteId differs from Node's (and changes when a link target
changes). Projects without links or special files get Node's id, byte for byte.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from hyperframes_airflow.contract._files import file_kind

__all__ = [
    "SKIP_ROOT_ENTRIES",
    "SiteEntry",
    "UnsafeSiteEntry",
    "build_tarball",
    "copy_site",
    "require_entry_file",
    "site_entries",
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


class UnsafeSiteEntry(ValueError):
    """A project entry that cannot be part of a site; the message names it (relative path)."""


@dataclass(frozen=True, slots=True)
class SiteEntry:
    """One file or folder of a site, in walk order."""

    rel: str
    """Its `/`-separated path from the project root: the name hashed, packed and copied."""
    source: str
    """The real path to read: the entry itself, or where its symlink leads."""
    is_dir: bool
    executable: bool
    """A file with any execute bit (packed and copied as 0755, else 0644)."""


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


def _sorted_entries(directory: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return iter(sorted(it, key=_js_sort_key))


def site_entries(project_dir: StrPath) -> Iterator[SiteEntry]:
    """Every file and folder of the site, in `hashProjectDir` order: depth first, each folder's
    entries sorted by UTF-16 code units, root skip list applied, symlinks inside the project
    followed. Raises `UnsafeSiteEntry` at the first entry that cannot be part of a site.

    Iterative (a deep tree cannot exhaust the stack); a folder is yielded before its content.
    """
    root = os.path.realpath(_require_dir(project_dir))
    stack: list[tuple[str, str, Iterator[os.DirEntry[str]]]] = [("", root, _sorted_entries(root))]
    open_dirs = {root}  # real paths of the folders being walked: a link to one would loop
    while stack:
        rel_dir, real_dir, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            open_dirs.discard(real_dir)
            continue
        if not rel_dir and entry.name in SKIP_ROOT_ENTRIES:
            continue
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        _utf8(rel)
        site_entry = _site_entry(entry, rel, root, open_dirs)
        yield site_entry
        if site_entry.is_dir:
            open_dirs.add(site_entry.source)
            stack.append((rel, site_entry.source, _sorted_entries(site_entry.source)))


def _site_entry(entry: os.DirEntry[str], rel: str, root: str, open_dirs: set[str]) -> SiteEntry:
    """What `entry` contributes (its parent is a real path, so a non-link entry's is too)."""
    if entry.is_symlink():
        return _followed_link(entry.path, rel, root, open_dirs)
    if entry.is_dir(follow_symlinks=False):
        return SiteEntry(rel, entry.path, is_dir=True, executable=False)
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISREG(mode):
        return SiteEntry(rel, entry.path, is_dir=False, executable=bool(mode & 0o111))
    raise UnsafeSiteEntry(
        f'[deploySite] "{rel}" is {file_kind(mode)}: only files, folders and links to them '
        "can be part of a site"
    )


def _followed_link(path: str, rel: str, root: str, open_dirs: set[str]) -> SiteEntry:
    """The file or folder a symlink inside the project leads to, or why it cannot be followed."""
    target = os.readlink(path)
    try:
        real = os.path.realpath(path, strict=True)
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise UnsafeSiteEntry(
            f'[deploySite] symlink "{rel}" is dangling: its target "{target}" does not exist'
        ) from None
    except OSError as exc:  # ELOOP: links that lead to each other
        loop = exc.errno == errno.ELOOP
        reason = "is part of a symlink loop" if loop else f"cannot be followed ({exc.strerror})"
        raise UnsafeSiteEntry(f'[deploySite] symlink "{rel}" {reason}') from None
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise UnsafeSiteEntry(
            f'[deploySite] symlink "{rel}" points outside the project (to {real}): only links to '
            "files and folders inside the project are followed"
        )
    if stat.S_ISDIR(mode):
        if real in open_dirs:
            raise UnsafeSiteEntry(
                f'[deploySite] symlink "{rel}" points to "{target}", a folder that contains it: '
                "following it would never end"
            )
        return SiteEntry(rel, real, is_dir=True, executable=False)
    if stat.S_ISREG(mode):
        return SiteEntry(rel, real, is_dir=False, executable=bool(mode & 0o111))
    raise UnsafeSiteEntry(
        f'[deploySite] symlink "{rel}" points to {file_kind(mode)}: only files, folders and '
        "links to them can be part of a site"
    )


def site_id(project_dir: StrPath) -> str:
    """The HyperFrames siteId of a project directory: 16 hex chars of a sha256 over its files.

    Hashes `utf8(rel) + b"\\0" + content` for every file of `site_entries` in walk order. Modes,
    mtimes and empty folders do not count. Equal to Node's for projects without symlinks (see the
    module docstring for projects with them).
    """
    digest = hashlib.sha256()
    for entry in site_entries(project_dir):
        if entry.is_dir:
            continue
        digest.update(_utf8(entry.rel))
        digest.update(b"\0")
        with open(entry.source, "rb") as fh:
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


def _mode(entry: SiteEntry) -> int:
    """Normalised modes, identical in the tarball and a copy."""
    return 0o755 if entry.is_dir or entry.executable else 0o644


def _tar_info(entry: SiteEntry, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.rel)
    info.type = tarfile.DIRTYPE if entry.is_dir else tarfile.REGTYPE
    info.size = 0 if entry.is_dir else size
    info.mode = _mode(entry)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_tarball(project_dir: StrPath, dest_path: StrPath) -> int:
    """Write `project.tar.gz` for a site and return its size in bytes.

    Holds exactly `site_entries` (links stored as the files and folders they lead to); nothing
    is written when an entry is refused. Member names are relative to the root (no `./` prefix,
    which node-tar does not need), in walk order, with mtime 0, uid/gid 0, no owner names,
    normalised modes and a gzip header without name or timestamp.
    """
    entries = list(site_entries(project_dir))  # refuse before writing anything
    dest = os.fspath(dest_path)
    dest_real = os.path.realpath(dest)
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in entries:
            if entry.is_dir:
                tar.addfile(_tar_info(entry, 0))
            elif entry.source != dest_real:  # never pack the tarball into itself
                with open(entry.source, "rb") as fh:
                    tar.addfile(_tar_info(entry, os.fstat(fh.fileno()).st_size), fh)
    return os.stat(dest).st_size


def copy_site(project_dir: StrPath, dest_dir: StrPath) -> int:
    """Copy exactly what the siteId covers into `dest_dir` (absent or empty); return the bytes
    of file content copied.

    Same entries, links dereferenced and modes normalised as in the tarball, so a render from
    the copy sees what Lambda sees after extracting it. Nothing is written when an entry is
    refused. For an atomic deploy, copy into a temporary folder beside the target and rename it.
    """
    entries = list(site_entries(project_dir))  # refuse before writing anything
    dest = os.fspath(dest_dir)
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise FileExistsError(f"[copySite] destination is not empty: {dest}")
    dest_real = os.path.realpath(dest)
    copied = 0
    for entry in entries:
        if entry.source == dest_real:  # the destination itself, when it lies in the project
            continue
        target = os.path.join(dest, entry.rel)
        if entry.is_dir:
            os.mkdir(target)
        else:
            shutil.copyfile(entry.source, target)
            copied += os.stat(target).st_size
        os.chmod(target, _mode(entry))
    return copied
