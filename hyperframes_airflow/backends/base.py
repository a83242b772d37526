"""The seam between the Airflow operators and where renders run.

Both backends (Lambda and local) deploy a site once, render one row, and stop a render; the
operators, the factory and the manifest are shared. A render's result is a manifest row, so what
the task returns is exactly what the manifest will say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ProgressCallback = Callable[[str], None]


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
class RenderJob:
    """Everything one render needs, resolved: which site, which output, which input."""

    input_line: int
    output_key: str
    execution_name: str
    site_id: str
    config: Mapping[str, Any]
    variables: Mapping[str, Any] = field(default_factory=dict)
    input_digest: str = ""
    attempt: int = 1


class RenderBackend(Protocol):
    """What a place that runs renders must offer."""

    kind: str

    def output_uri(self, output_key: str) -> str:
        """Where the row's output lands (for the manifest)."""
        ...

    def default_manifest_uri(self, dag_id: str, run_id: str) -> str:
        """Where the run's manifest goes when the user did not choose."""
        ...

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Make the project available to renders, once per content hash."""
        ...


def safe_path_segment(value: str) -> str:
    """Run ids carry `:` and `+`; keep manifest paths portable across S3 and file systems."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in value)


class RenderFailed(Exception):
    """A render ended without output; `row` is its manifest row (status, error, cause)."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = dict(row)
        super().__init__(f"{row.get('status')}: {row.get('error')}")
