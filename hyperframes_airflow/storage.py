"""Batch lines and manifests where they live: local paths, `file://`, `s3://` (ObjectStoragePath).

`prepare_batch` streams the whole batch once; each render then reads back only its own lines by
the byte offset prepare recorded, and checks each against the digest prepare computed, so a
row's variables never pass through XCom, trigger kwargs or rendered fields, and a file edited
after prepare fails that row clearly instead of rendering someone else's video.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from airflow.sdk import ObjectStoragePath

from hyperframes_airflow.contract.batch import (
    BatchRow,
    BatchSourceError,
    RejectedRow,
    local_batch_problem,
    read_row_at,
)
from hyperframes_airflow.contract.plan import row_digest
from hyperframes_airflow.contract.rows import BatchSpec, RowRef

__all__ = [
    "BatchSourceError",
    "RowChanged",
    "open_batch",
    "read_planned_rows",
    "read_text",
    "write_text_atomic",
]


class RowChanged(ValueError):
    """A line no longer holds the row prepare_batch planned there (the file changed)."""


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri:
        return None
    return Path(uri)


@contextmanager
def open_batch(uri: str, conn_id: str | None = None) -> Iterator[IO[bytes]]:
    """The batch as a seekable binary stream (lines split on `\\n` only, as in Node)."""
    local = _local_path(uri)
    if local is not None:
        problem = local_batch_problem(local)  # a FIFO would block on open: stat first
        if problem:
            raise BatchSourceError(problem)
        with open(local, "rb") as handle:
            yield handle
        return
    with ObjectStoragePath(uri, conn_id=conn_id).open("rb") as handle:
        yield handle


def read_planned_rows(
    spec: BatchSpec, refs: list[RowRef], base_wire: Mapping[str, Any]
) -> Iterator[BatchRow | RowChanged]:
    """Each planned row read again from the batch, checked against its digest, in order.

    Opens the source once for all the rows (a lane); yields a `RowChanged` in place of a row
    whose line no longer parses to the same render input.
    """
    with open_batch(spec.source, spec.source_conn_id) as handle:
        for ref in refs:
            found = read_row_at(
                handle,  # type: ignore[arg-type]
                offset=ref.offset,
                line=ref.line,
                format=spec.format,
            )
            if isinstance(found, RejectedRow):
                reasons = "; ".join(issue.message for issue in found.errors) or "unreadable"
                yield RowChanged(
                    f"line {ref.line} of {spec.source} changed since prepare_batch read it "
                    f"({reasons})"
                )
                continue
            digest = row_digest(
                base_wire=base_wire, bucket=spec.digest_bucket, site_id=spec.site_id, row=found
            )
            if found.output_key != ref.output_key or not digest.startswith(ref.digest):
                yield RowChanged(
                    f"line {ref.line} of {spec.source} changed since prepare_batch read it "
                    "(its content no longer matches the planned row); not rendering it"
                )
                continue
            yield found


def write_text_atomic(uri: str, text: str, *, conn_id: str | None = None) -> None:
    """Write a whole document so readers never see half of it: a local file goes through a
    temp file and `os.replace`; an object store gets one PUT, which is atomic on S3."""
    local = _local_path(uri)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", dir=local.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, local)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    with ObjectStoragePath(uri, conn_id=conn_id).open("w", encoding="utf-8") as handle:
        handle.write(text)


def read_text(uri: str, *, conn_id: str | None = None) -> str | None:
    """A whole document (a manifest) written by `write_text_atomic`; None when it is missing."""
    local = _local_path(uri)
    try:
        if local is not None:
            return local.read_text(encoding="utf-8")
        with ObjectStoragePath(uri, conn_id=conn_id).open("r", encoding="utf-8") as handle:
            text: str = handle.read()
            return text
    except FileNotFoundError:
        return None
