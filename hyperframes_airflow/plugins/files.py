"""Where the batch page may send a browser for a row's output or poster frame.

Only two kinds of place, each checked: a `file://` URI is served when it resolves (symlinks
followed) to a regular file under the batch's own local root (`BatchSpec.local_root`), and an
`s3://` URI becomes a short-lived presigned GET through the batch's own connection. Anything
else (another scheme, a path outside the root, a root the batch does not have) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from hyperframes_airflow.contract.rows import BatchSpec

__all__ = ["PRESIGN_SECONDS", "Refused", "Target", "locate"]

PRESIGN_SECONDS = 900


class Refused(LookupError):
    """The URI is not one the page may serve (the caller answers 404)."""


@dataclass(frozen=True)
class Target:
    """A file to stream, or a URL to redirect to."""

    path: Path | None = None
    url: str | None = None


def _local_file(uri: str, root: str | None) -> Path:
    if not root:
        raise Refused("this batch has no local root")
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise Refused("not a local file")
    # A root is a directory or a file:// URI (an object-store root on a mounted disk).
    base = Path(unquote(urlparse(root).path) if root.startswith("file://") else root).resolve()
    path = Path(unquote(parsed.path)).resolve()
    if base not in path.parents or not path.is_file():
        raise Refused("not a file under the batch's local root")
    return path


def _presigned(uri: str, conn_id: str | None) -> str:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise Refused("not an s3://bucket/key URI")
    url = S3Hook(aws_conn_id=conn_id).generate_presigned_url(
        client_method="get_object",
        params={"Bucket": bucket, "Key": key},
        expires_in=PRESIGN_SECONDS,
    )
    if not url:
        raise Refused("could not presign the object")
    return str(url)


def locate(uri: str | None, spec: BatchSpec | None) -> Target:
    """Where to find `uri` for a browser, or `Refused`."""
    if not uri or spec is None:
        raise Refused("nothing to serve")
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return Target(path=_local_file(uri, spec.local_root))
    if scheme == "s3":
        return Target(url=_presigned(uri, spec.source_conn_id))
    raise Refused(f"{scheme or 'a bare path'} is not served")
