"""Where renders run: the one small protocol both backends satisfy.

`prepare_batch`, `deploy_site` and `collect_manifest` are the same operators for both backends;
they hold a `RenderBackend` and never ask which one it is. Each backend resolves its facts once
(`resolve`, in prepare), deploys a site once per content hash, and, for the manifest, settles
rows whose task left no result (a killed task: find what really happened, and stop a render
that would otherwise outlive its task).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.rows import BatchSpec, LambdaStack, RowRef

__all__ = ["RenderBackend", "Resolved", "SiteHandle", "manifest_name"]


@dataclass(frozen=True)
class SiteHandle:
    """A deployed project: content-addressed by siteId, uploaded at most once."""

    site_id: str
    project_uri: str
    uploaded: bool
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "siteId": self.site_id,
            "projectUri": self.project_uri,
            "uploaded": self.uploaded,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Resolved:
    """What prepare learns from the backend, once, for every render of the batch."""

    digest_bucket: str
    project_uri: str
    config: RenderConfig
    stack: LambdaStack | None = None
    local_root: str | None = None
    source_conn_id: str | None = None


class RenderBackend(Protocol):
    """What a place that runs renders offers the shared operators."""

    kind: str
    bills_renders: bool
    """True when renders cost money per render (the cost gate applies)."""

    @property
    def root_uri(self) -> str:
        """Where this backend keeps sites, outputs and manifests (a directory or `s3://b/`)."""
        ...

    def resolve(self, *, site_id: str, config: RenderConfig) -> Resolved:
        """Facts for the batch spec (stack or root); may adjust the config to the stack."""
        ...

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Make the project available to renders, once per content hash."""
        ...

    def find_site(self, site_id: str) -> SiteHandle | None:
        """The deployed site, or None when it is not there."""
        ...

    def site_key(self, site_id: str) -> str:
        """Where a site lives, for messages (`s3://.../project.tar.gz` or a directory)."""
        ...

    def site_composition(self, site_id: str) -> Composition:
        """The composition a deployed site renders, read from the site itself (its entry file,
        streamed from the tarball): for DAGs whose workers do not hold the project."""
        ...

    def default_manifest_uri(self, dag_id: str, run_id: str, group_id: str) -> str:
        """Where the run's manifest goes when the user did not choose."""
        ...

    def settle(
        self,
        spec: BatchSpec,
        pending: Sequence[tuple[RowRef, str | None]],
        *,
        dag_id: str,
        run_id: str,
        since: datetime | None = None,
    ) -> dict[int, ManifestRow]:
        """Rows (by line) of tasks that finished without leaving their results, each with its
        task's state: what their renders really did. A render still running for a task no
        longer running is stopped. `since` is when the run started (no render of it is older)."""
        ...


def manifest_name(dag_id: str, run_id: str, group_id: str) -> str:
    """`<dag>/<group>/<run>-<hash>.json`: run ids differing only in `:`, `+`, `/` or spaces
    stay apart (the hash), and two render_batch groups of one DAG never share a manifest."""

    def safe(value: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in value).strip(".") or "_"

    digest = hashlib.sha256(f"{dag_id}\0{group_id}\0{run_id}".encode()).hexdigest()[:8]
    return f"{safe(dag_id)}/{safe(group_id)}/{safe(run_id)}-{digest}.json"
