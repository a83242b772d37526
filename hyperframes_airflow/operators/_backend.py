"""The backend settings prepare, deploy and collect share (one place, validated when parsed)."""

from __future__ import annotations

from typing import Any

from hyperframes_airflow.backends import check_backend, make_backend
from hyperframes_airflow.backends.base import RenderBackend
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID

#: Template fields of the backend settings, added to each operator's own.
BACKEND_TEMPLATE_FIELDS: tuple[str, ...] = ("conn_id", "region_name", "local_root")


class BackendSettings:
    """Mixin: `backend` (`local` or `lambda`) plus what builds it, resolved once per execute.

    :param backend: `lambda` (Step Functions + Lambda) or `local` (the worker's CLI).
    :param conn_id: The `aws` connection: the stack for Lambda, object-store batches for both.
    :param region_name: Region override for the stack.
    :param verify: SSL verification, as for every AWS hook.
    :param botocore_config: botocore client configuration, as for every AWS hook.
    :param local_root: The local backend's root (sites, outputs, manifests).
    """

    backend: str
    conn_id: str | None
    region_name: str | None
    verify: bool | str | None
    botocore_config: dict[str, Any] | None
    local_root: str | None
    _backend: RenderBackend | None = None

    def set_backend(
        self,
        backend: str,
        conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        local_root: str | None = None,
    ) -> None:
        self.backend = check_backend(backend)
        self.conn_id = conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.local_root = local_root

    def render_backend(self) -> RenderBackend:
        if self._backend is None:
            self._backend = make_backend(
                self.backend,
                aws_conn_id=self.conn_id,
                region_name=self.region_name or None,
                verify=self.verify,
                botocore_config=self.botocore_config,
                local_root=self.local_root or None,
            )
        return self._backend
