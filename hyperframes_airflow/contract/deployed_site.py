"""A site already in the bucket: read its composition from `sites/<siteId>/project.tar.gz`.

A DAG may render from a siteId another machine uploaded, with no project directory at hand. The
tarball is a gzip tar made by node-tar (`tar.create({gzip: true, cwd}, ["."])`, names such as
`./index.html`) or by `contract.site.build_tarball` (names such as `index.html`); contract §2.3.
We stream it (`tarfile` mode `r|gz`), stop at the entry member and parse it with the same parser
as `read_composition` does for a directory: nothing is extracted to disk and the archive is
never held in memory, so a site with gigabytes of footage costs one small read.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from typing import Any, BinaryIO, Literal

from hyperframes_airflow.contract.composition import Composition, composition_from_html

__all__ = [
    "DEFAULT_MAX_ENTRY_BYTES",
    "SITE_ID_RULE",
    "DeployedSiteError",
    "read_composition_from_tarball",
    "validate_site_id",
]

#: An `index.html` above this is refused: real compositions are kilobytes, and the entry is the
#: one member read into memory.
DEFAULT_MAX_ENTRY_BYTES = 8 * 1024 * 1024

#: The siteId rule, quoted in every rejection.
SITE_ID_RULE = (
    "a siteId must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-', and not '.' or '..' "
    "(it is one segment of the S3 key sites/<siteId>/project.tar.gz)"
)
_SITE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)

ErrorKind = Literal["missing", "not-a-file", "too-large", "unreadable"]


class DeployedSiteError(ValueError):
    """The entry could not be read from a site tarball. `entry` is the entry asked for; `kind`
    is `missing` (no such member), `not-a-file` (a link, directory or special file),
    `too-large` (over `max_entry_bytes`) or `unreadable` (not a gzip tar, truncated, corrupt)."""

    def __init__(self, entry: str, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.entry = entry
        self.kind = kind


def validate_site_id(value: Any) -> str:
    """Return `value` when it is a safe siteId (see `SITE_ID_RULE`), else raise ValueError.

    The Node SDK uses a caller's id verbatim (e.g. `release-v1.2.3`) and puts it in an S3 key;
    we only accept ids that are one plain key segment. Ids from `site_id` (16 hex) always pass.
    """
    if not isinstance(value, str) or not _SITE_ID.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"invalid siteId {value!r}: {SITE_ID_RULE}")
    return value


def _path_parts(name: str) -> list[str] | None:
    """A member or entry name as path segments, as node-tar extracts it: leading `/` and `./`
    and inner `.` segments dropped. None when a `..` segment would leave the root."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    return None if ".." in parts else parts


def _entry_parts(entry: str) -> list[str]:
    if not isinstance(entry, str) or entry.startswith(("/", "\\")):
        raise ValueError(f"entry must be a relative path inside the site; got {entry!r}")
    parts = _path_parts(entry)
    if not parts:
        raise ValueError(f"entry must be a relative path inside the site; got {entry!r}")
    return parts


def _unreadable(entry: str, exc: BaseException) -> DeployedSiteError:
    detail = str(exc) or type(exc).__name__
    truncated = ("unexpected end", "ended before", "truncated", "empty file")
    if isinstance(exc, EOFError) or any(text in detail for text in truncated):
        why = f"the archive is truncated ({detail})"
    elif "not a gzip" in detail.lower() or "bad gzip" in detail.lower():
        why = f"it is not a gzip file ({detail})"
    else:
        why = f"it is not a readable gzip tar ({detail})"
    return DeployedSiteError(
        entry, "unreadable", f"cannot read {entry} from the site tarball: {why}"
    )


def read_composition_from_tarball(
    fileobj: BinaryIO,
    entry: str = "index.html",
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
) -> Composition:
    """Parse the `entry` member (default `index.html`, else the config's `entryFile`) of a
    site's gzip tarball, read from `fileobj` front to back, exactly as `read_composition` parses
    `<project_dir>/<entry>`.

    Member names match with or without a leading `./`. Reading stops at the first member with
    that name (node-tar and `build_tarball` store each path once); the rest of the archive is
    never read, so a truncated tail after the entry goes unnoticed. `fileobj` is not closed and
    may be any readable binary stream (an open file, an S3 `StreamingBody`, a socket).

    Raises `DeployedSiteError` (a ValueError naming the entry) when the entry is missing, is a
    symlink, hard link, directory or other non-regular member, is bigger than `max_entry_bytes`,
    or when the stream is not a gzip tar or ends early; ValueError for an unsafe `entry`.
    """
    target = _entry_parts(entry)
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as tar:
            for member in tar:
                if _path_parts(member.name) != target:
                    continue
                return _read_member(tar, member, entry, max_entry_bytes)
    except DeployedSiteError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _unreadable(entry, exc) from exc
    raise DeployedSiteError(
        entry,
        "missing",
        f"the site tarball has no {entry} (looked for {'/'.join(target)} and "
        f"./{'/'.join(target)}); HyperFrames renders the composition from this entry file",
    )


def _read_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: str, max_entry_bytes: int
) -> Composition:
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise DeployedSiteError(
            entry,
            "not-a-file",
            f"{entry} in the site tarball is a {kind} link (to {member.linkname!r}); it cannot "
            "be read without extracting the archive",
        )
    if not member.isfile():
        raise DeployedSiteError(
            entry, "not-a-file", f"{entry} in the site tarball is not a regular file"
        )
    if member.size > max_entry_bytes:
        raise DeployedSiteError(
            entry,
            "too-large",
            f"{entry} in the site tarball is {member.size} bytes, above the "
            f"{max_entry_bytes}-byte limit for a composition",
        )
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - isfile() members always have a handle
        raise DeployedSiteError(entry, "not-a-file", f"{entry} in the site tarball has no data")
    data = handle.read(max_entry_bytes + 1)
    if len(data) != member.size:
        raise DeployedSiteError(
            entry,
            "unreadable",
            f"cannot read {entry} from the site tarball: the archive is truncated "
            f"({len(data)} of {member.size} bytes)",
        )
    return composition_from_html(data)
