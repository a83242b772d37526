"""`deploy_site`: make the project available to renders, once per content hash."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from hyperframes_airflow.backends import make_backend
from hyperframes_airflow.contract.site import require_entry_file, site_id
from hyperframes_airflow.operators._coerce import as_bool


class HyperframesDeploySiteOperator(BaseOperator):
    """Deploy `sites/<siteId>/` (S3 tarball or local copy) unless it is already there.

    The siteId is the Node SDK's content hash, so a site deployed by `hyperframes lambda` is
    reused as is, and an unchanged project is never uploaded twice. Skipped on dry runs.
    """

    template_fields: Sequence[str] = ("project_dir", "is_dry_run", "local_root")
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        project_dir: str,
        backend: str = "local",
        conn_id: str = "hyperframes_default",
        local_root: str | None = None,
        dry_run: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = project_dir
        self.backend = backend
        self.conn_id = conn_id
        self.local_root = local_root
        self.is_dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        if as_bool(self.is_dry_run, name="dry_run"):
            raise AirflowSkipException("Dry run: nothing is deployed")
        project = Path(self.project_dir)
        require_entry_file(project)
        sid = site_id(project)
        backend = make_backend(self.backend, local_root=self.local_root, conn_id=self.conn_id)
        handle = backend.deploy_site(project, sid)
        verb = "Deployed" if handle.uploaded else "Reusing already deployed"
        self.log.info("%s site %s at %s (%d bytes)", verb, sid, handle.project_uri, handle.bytes)
        return handle.to_dict()
