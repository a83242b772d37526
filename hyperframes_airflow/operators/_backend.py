"""The backend settings prepare, deploy and collect share (one place, validated when parsed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hyperframes_airflow.backends import check_backend, make_backend
from hyperframes_airflow.backends.base import RenderBackend
from hyperframes_airflow.contract.roots import ENV_ALLOWED_ROOTS, check_under_roots, is_template
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
    :param allowed_roots: Where templated paths and URIs (from a trigger form or a run conf)
        may point, besides the backend's own root; also `$HYPERFRAMES_ALLOWED_ROOTS`.
    """

    backend: str
    conn_id: str | None
    region_name: str | None
    verify: bool | str | None
    botocore_config: dict[str, Any] | None
    local_root: str | None
    allowed_roots: tuple[str, ...] = ()
    _templated: frozenset[str] = frozenset()
    _backend: RenderBackend | None = None

    def set_backend(
        self,
        backend: str,
        conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        local_root: str | None = None,
        allowed_roots: Sequence[str] | None = None,
    ) -> None:
        self.backend = check_backend(backend)
        self.allowed_roots = tuple(allowed_roots or ())
        self.conn_id = conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.local_root = local_root

    def remember_templated(self, **values: Any) -> None:
        """Note which arguments are templates (before Airflow renders them in place): their
        rendered values come from users and must stay under the allowed roots."""
        self._templated = frozenset(name for name, value in values.items() if is_template(value))

    def guard(self, field: str, value: str | None, *, own_root: bool = False) -> None:
        """Refuse a templated path outside the allowed roots (`own_root`: the backend's own
        root, where batches and manifests may live, counts as allowed too)."""
        if value is None or field not in self._templated or not str(value).strip():
            return
        roots = [*self.allowed_roots, *_env_roots()]
        if own_root:
            roots.append(self.render_backend().root_uri)
        check_under_roots(str(value), roots, field=field)

    def render_backend(self) -> RenderBackend:
        if self._backend is None:
            self.guard("local_root", self.local_root)
            self._backend = make_backend(
                self.backend,
                aws_conn_id=self.conn_id,
                region_name=self.region_name or None,
                verify=self.verify,
                botocore_config=self.botocore_config,
                local_root=self.local_root or None,
            )
        return self._backend


def _env_roots() -> list[str]:
    return [r.strip() for r in os.environ.get(ENV_ALLOWED_ROOTS, "").split(",") if r.strip()]
