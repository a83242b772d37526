"""`deploy_site`: make the project available to renders, once per content hash."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from hyperframes_airflow.contract.deployed_site import validate_site_id
from hyperframes_airflow.contract.options import optional_text, parse_bool
from hyperframes_airflow.contract.site import require_entry_file, site_id
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID
from hyperframes_airflow.operators._backend import BACKEND_TEMPLATE_FIELDS, BackendSettings


class HyperframesDeploySiteOperator(BackendSettings, BaseOperator):
    """Deploy `sites/<siteId>/` (S3 tarball or local copy) unless it is already there.

    The siteId is the Node SDK's content hash, so a site deployed by `hyperframes lambda` is
    reused as is, and an unchanged project is never uploaded twice. Skipped on dry runs.

    :param project_dir: The HyperFrames project (contains index.html).
    :param site_id: A site deployed elsewhere: nothing to upload, the task checks it is there.
    :param dry_run: Deploy nothing (the task is skipped).
    """

    template_fields: Sequence[str] = (
        "project_dir",
        "site_id",
        "is_dry_run",
        *BACKEND_TEMPLATE_FIELDS,
    )
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        project_dir: str | None = None,
        site_id: str | None = None,
        backend: str = "local",
        conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        local_root: str | None = None,
        allowed_roots: Sequence[str] | None = None,
        dry_run: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_backend(
            backend, conn_id, region_name, verify, botocore_config, local_root, allowed_roots
        )
        self.remember_templated(project_dir=project_dir, local_root=local_root)
        self.project_dir = project_dir
        self.site_id = site_id
        self.is_dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        if parse_bool(self.is_dry_run, name="dry_run", default=False):
            raise AirflowSkipException("Dry run: nothing is deployed")
        given = optional_text(self.site_id)
        if given:
            sid = validate_site_id(given)
            found = self.render_backend().find_site(sid)
            if found is None:
                raise AirflowFailException(f"site {sid} is not deployed")
            self.log.info("Rendering site %s deployed elsewhere (%s)", sid, found.project_uri)
            return found.to_dict()
        self.guard("project_dir", self.project_dir)
        project = Path(str(self.project_dir))
        require_entry_file(project)
        sid = site_id(project)
        handle = self.render_backend().deploy_site(project, sid)
        verb = "Deployed" if handle.uploaded else "Reusing already deployed"
        self.log.info("%s site %s at %s (%d bytes)", verb, sid, handle.project_uri, handle.bytes)
        return handle.to_dict()
