"""Where renders run: `local` (the hyperframes CLI on the worker) and `lambda` (Step Functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hyperframes_airflow.backends.base import RenderBackend

BackendKind = Literal["local", "lambda"]
BACKEND_KINDS: tuple[str, ...] = ("local", "lambda")


def default_local_root() -> Path:
    """`$HYPERFRAMES_LOCAL_ROOT`, else `./hyperframes-output` under the current directory."""
    import os

    return Path(os.environ.get("HYPERFRAMES_LOCAL_ROOT", "hyperframes-output")).resolve()


def make_backend(
    kind: str, *, local_root: str | None = None, conn_id: str | None = None
) -> RenderBackend:
    """Build the backend a task was configured with (tasks hold names, not clients)."""
    if kind == "local":
        from hyperframes_airflow.backends.local import LocalBackend

        return LocalBackend(local_root or default_local_root())
    if kind == "lambda":
        from hyperframes_airflow.backends.lambda_ import LambdaBackend

        return LambdaBackend(conn_id=conn_id or "hyperframes_default")
    raise ValueError(f"backend must be one of {', '.join(BACKEND_KINDS)}; got {kind!r}")
