"""Where renders run: `local` (the hyperframes CLI on the worker) and `lambda` (Step Functions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from hyperframes_airflow.backends.base import RenderBackend
from hyperframes_airflow.contract.root_uri import is_root_uri
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID

BackendKind = Literal["local", "lambda"]
BACKEND_KINDS: tuple[str, ...] = ("local", "lambda")

__all__ = ["BACKEND_KINDS", "BackendKind", "check_backend", "default_local_root", "make_backend"]


def check_backend(kind: str) -> str:
    """The backend name, or a ValueError naming the choices (called when the DAG is parsed)."""
    if kind not in BACKEND_KINDS:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_KINDS)}; got {kind!r}")
    return kind


def default_local_root() -> Path | str:
    """`$HYPERFRAMES_LOCAL_ROOT`, else `./hyperframes-output` under the current directory; an
    object-store URI (`s3://bucket/prefix`) is kept as it is."""
    configured = os.environ.get("HYPERFRAMES_LOCAL_ROOT", "hyperframes-output")
    return configured if is_root_uri(configured) else Path(configured).resolve()


def make_backend(
    kind: str,
    *,
    aws_conn_id: str | None = DEFAULT_CONN_ID,
    region_name: str | None = None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
    local_root: str | None = None,
) -> RenderBackend:
    """The backend a task was configured with (tasks hold names and ids, not clients)."""
    check_backend(kind)
    if kind == "local":
        from hyperframes_airflow.backends.local import LocalBackend

        return LocalBackend(local_root or default_local_root(), conn_id=aws_conn_id)
    from hyperframes_airflow.backends.lambda_ import LambdaBackend

    return LambdaBackend(
        aws_conn_id=aws_conn_id,
        region_name=region_name,
        verify=verify,
        botocore_config=botocore_config,
    )
