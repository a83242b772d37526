"""The local backend: renders on the Airflow worker with the `hyperframes` CLI.

The root directory is laid out like the Lambda bucket: `sites/<siteId>/` holds each deployed
project (copied once per content hash), each row's output lands at `<root>/<outputKey>`, and
`.hyperframes/renders/<executionName>.json` remembers finished renders so a cleared task with the
same input returns the earlier result instead of rendering again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hyperframes_airflow.backends.base import (
    ProgressCallback,
    RenderFailed,
    RenderJob,
    SiteHandle,
    safe_path_segment,
)
from hyperframes_airflow.backends.local_cli import (
    LocalRenderError,
    LocalRenderTimeout,
    Toolchain,
    find_toolchain,
    kill_process_group,
    render_local,
)
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.site import SKIP_ROOT_ENTRIES


def iso_now() -> str:
    """A JS-style ISO timestamp (milliseconds, `Z`), the format the Node SDK writes."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LocalBackend:
    """Deploys sites into a local root and renders rows with the CLI, one process group each."""

    kind = "local"

    def __init__(self, root: str | os.PathLike[str], toolchain: Toolchain | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self._toolchain = toolchain

    @property
    def toolchain(self) -> Toolchain:
        if self._toolchain is None:
            self._toolchain = find_toolchain()
        return self._toolchain

    def output_path(self, output_key: str) -> Path:
        return self.root / output_key

    def output_uri(self, output_key: str) -> str:
        return self.output_path(output_key).as_uri()

    def default_manifest_uri(self, dag_id: str, run_id: str) -> str:
        name = f"{safe_path_segment(run_id)}.json"
        return (self.root / "manifests" / safe_path_segment(dag_id) / name).as_uri()

    def site_dir(self, site_id: str) -> Path:
        return self.root / "sites" / site_id

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Copy the project to `sites/<siteId>/` unless that content is already there."""
        target = self.site_dir(site_id)
        if target.is_dir():
            return SiteHandle(site_id, target.as_uri(), uploaded=False, bytes=_tree_bytes(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{site_id}-", dir=target.parent))
        try:
            shutil.copytree(
                project_dir,
                staging,
                dirs_exist_ok=True,
                ignore=_ignore_root_entries(project_dir),
            )
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():  # a concurrent deploy of the same site won the race
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return SiteHandle(site_id, target.as_uri(), uploaded=True, bytes=_tree_bytes(target))

    # -- renders -------------------------------------------------------------------------------

    def _record_path(self, execution_name: str) -> Path:
        return self.root / ".hyperframes" / "renders" / f"{execution_name}.json"

    def previous_result(self, job: RenderJob) -> dict[str, Any] | None:
        """The earlier successful result for this exact input, if its output still exists."""
        record = self._record_path(job.execution_name)
        if not record.is_file():
            return None
        data = json.loads(record.read_text())
        if data.get("inputDigest") != job.input_digest:
            return None
        if not self.output_path(job.output_key).is_file():
            return None
        row: dict[str, Any] = data["row"]
        return row

    def render(
        self,
        job: RenderJob,
        *,
        on_progress: ProgressCallback | None = None,
        on_start: Any = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Render one row to `<root>/<outputKey>`; return its manifest row or raise RenderFailed."""
        output = self.output_path(job.output_key)
        output.parent.mkdir(parents=True, exist_ok=True)
        started_at = iso_now()
        base = {
            "inputLine": job.input_line,
            "outputKey": job.output_key,
            "executionName": job.execution_name,
            "attempt": job.attempt,
            "startedAt": started_at,
        }
        t0 = time.monotonic()
        try:
            result = render_local(
                toolchain=self.toolchain,
                project_dir=self.site_dir(job.site_id),
                output_path=output,
                variables=job.variables,
                fps=_as_int(job.config.get("fps")),
                quality=_local_quality(job.config.get("quality")),
                format=str(job.config.get("format", "mp4")),
                timeout_s=timeout_s,
                on_progress=on_progress,
                on_start=on_start,
                # Variables were checked against the schema in prepare_batch; mismatches are
                # warnings unless the batch ran with strict_variables (then the row is invalid).
                strict_variables=False,
            )
        except LocalRenderTimeout as exc:
            raise RenderFailed(
                {
                    **base,
                    "status": "timed-out",
                    "error": "TIMEOUT",
                    "cause": str(exc),
                    "endedAt": iso_now(),
                }
            ) from exc
        except LocalRenderError as exc:
            raise RenderFailed(
                {
                    **base,
                    "status": "failed",
                    "error": "RENDER_FAILED",
                    "cause": str(exc),
                    "endedAt": iso_now(),
                }
            ) from exc
        row = ManifestRow.model_validate(
            {
                **base,
                "status": "succeeded",
                "outputUri": output.as_uri(),
                "frames": result.frames,
                "bytes": result.bytes,
                "costUsd": 0.0,
                "endedAt": iso_now(),
            }
        ).model_dump(by_alias=True)
        record = self._record_path(job.execution_name)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(
            json.dumps(
                {
                    "inputDigest": job.input_digest,
                    "row": row,
                    "renderSeconds": round(time.monotonic() - t0, 3),
                }
            )
        )
        return row

    @staticmethod
    def stop(pid: int) -> None:
        """Kill a render's whole process group (node, chrome, ffmpeg)."""
        kill_process_group(pid)


def _local_quality(quality: Any) -> str | None:
    """Lambda's `standard`/`high`/`draft` map onto the CLI's presets (standard/high accepted)."""
    return None if quality is None else str(quality)


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _ignore_root_entries(root: Path) -> Any:
    root = root.resolve()

    def ignore(directory: str, names: list[str]) -> set[str]:
        if Path(directory).resolve() != root:
            return set()
        return {n for n in names if n in SKIP_ROOT_ENTRIES}

    return ignore


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
