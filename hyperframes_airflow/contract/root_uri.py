"""The local backend's root in an object store, as data: which roots are URIs, where a key lands
under one, and when a stored object is provably the one a render wrote.

Celery (or Kubernetes) workers on several machines share no disk, so the root may be
`s3://bucket/prefix` (or `gs://`, `file://`): every worker then reads and writes the same store.
Keys are joined below the root's prefix only: a key that could leave it (`..`, an absolute key,
empty or `.` segments, a backslash, control characters) is refused, even though prepare_batch
already refused it, because the render is what would write there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "RootUri",
    "StoredObject",
    "UnsafeKey",
    "is_root_uri",
    "key_problem",
    "parse_root_uri",
    "proves",
]

# Two or more scheme characters, so a Windows drive ("C:\\out") is never taken for a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f]")


class UnsafeKey(ValueError):
    """A key that would land outside the root's prefix, or name no single object."""


def is_root_uri(value: str) -> bool:
    """True for `scheme://...` roots (object stores, `file://`); False for plain paths."""
    return _SCHEME.match(value) is not None


@dataclass(frozen=True)
class RootUri:
    """A parsed root: `scheme://container/prefix` (for `file://`, no container: a path).

    :param scheme: `s3`, `gs`, `file`... (lower case).
    :param container: The bucket; empty for `file://`.
    :param prefix: The folder inside it, without leading or trailing `/` (for `file://`, the
        absolute path without its leading `/`).
    """

    scheme: str
    container: str
    prefix: str

    @property
    def uri(self) -> str:
        """The root itself, normalised (no trailing `/`)."""
        return self.key_uri("")

    def key_uri(self, key: str) -> str:
        """The URI of `key` below the root (`key` must already be checked: see `join`)."""
        parts = [p for p in (self.prefix, key) if p]
        if self.scheme == "file":
            return "file:///" + "/".join(parts)
        return f"{self.scheme}://" + "/".join([self.container, *parts])

    def join(self, key: str) -> str:
        """`prefix/key`, the object's key inside the container; `UnsafeKey` when `key` could
        leave the prefix or does not name one object."""
        problem = key_problem(key)
        if problem:
            raise UnsafeKey(f"{key!r} cannot be written below {self.uri}: {problem}")
        return f"{self.prefix}/{key}" if self.prefix else key


def key_problem(key: str) -> str | None:
    """Why `key` is not one object below a prefix, or None."""
    if not isinstance(key, str) or not key:
        return "a key must be a non-empty string"
    if key.startswith("/"):
        return 'it starts with "/"'
    if "\\" in key:
        return 'it contains "\\"'
    if _CONTROL.search(key):
        return "it contains control characters"
    segments = key.split("/")
    if ".." in segments:
        return 'it has a ".." segment'
    if "." in segments or "" in segments:
        return 'it has an empty or "." segment'
    return None


def parse_root_uri(value: str) -> RootUri:
    """Parse and check a root URI; ValueError says what is wrong with it.

    The connection is named by `conn_id`, never inside the URI (`s3://conn@bucket`), so one
    root has one spelling; query strings and fragments are refused (they would be ignored).
    """
    match = _SCHEME.match(value)
    if match is None:
        raise ValueError(f"not a root URI (scheme://...): {value!r}")
    scheme = match[1].lower()
    rest = value[match.end() :]
    if "?" in rest or "#" in rest:
        raise ValueError(f"a root URI takes no query or fragment: {value!r}")
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"a file:// root needs an absolute path (file:///srv/out): {value!r}")
        container, path = "", rest
    else:
        container, _, path = rest.partition("/")
        if not container:
            raise ValueError(f"a {scheme}:// root needs a bucket: {value!r}")
        if "@" in container:
            raise ValueError(
                f"name the connection with conn_id, not inside the root URI: {value!r}"
            )
    prefix = path.strip("/")
    if prefix and key_problem(prefix):
        raise ValueError(f"the root's path {path!r} is not a plain folder: {key_problem(prefix)}")
    return RootUri(scheme=scheme, container=container, prefix=prefix)


@dataclass(frozen=True)
class StoredObject:
    """What the store says about an object: its size and, where the store has one, its
    identity tag (S3 `ETag`, GCS `generation`), which changes whenever the object is written."""

    size: int
    etag: str | None = None


def proves(
    record: Mapping[str, Any], stored: StoredObject, content_sha256: Callable[[], str]
) -> bool:
    """True only when `stored` is provably the object `record` says a render wrote.

    The size must match, and then the identity tag when both have one; else the sha256 of the
    stored bytes (`content_sha256()`, called only then: it reads the whole object). Anything
    missing proves nothing, and the row is rendered again.
    """
    if not isinstance(record.get("bytes"), int) or stored.size != record["bytes"]:
        return False
    if stored.etag is not None and isinstance(record.get("etag"), str):
        return stored.etag == record["etag"]
    expected = record.get("sha256")
    return isinstance(expected, str) and content_sha256() == expected
