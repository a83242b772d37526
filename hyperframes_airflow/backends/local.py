"""The local backend: renders run on the Airflow worker with the `hyperframes` CLI.

Its root is laid out like the Lambda bucket (`backends/roots.py`): a local directory, or an
object store (`s3://`, `gs://`, `file://`) when workers share no disk. `sites/<siteId>/` holds
each deployed project (once per content hash), each row's output lands at `<root>/<outputKey>`
(never outside the root), and `.hyperframes/outputs/` holds one record per output key saying
which render wrote it, its size, sha256 and (in an object store) ETag. A cleared task reuses a
row's earlier result only when the stored output is provably the one that render wrote; a key
another run wrote before is rendered again and the manifest says whose output it replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hyperframes_airflow.backends.base import Resolved, SiteHandle, manifest_name
from hyperframes_airflow.backends.dir_root import DirectoryRoot
from hyperframes_airflow.backends.local_cli import (
    LocalRenderError,
    LocalRenderResult,
    LocalRenderTimeout,
    Toolchain,
    find_toolchain,
    kill_process_group,
    render_local,
)
from hyperframes_airflow.backends.local_cli.media import poster_frame
from hyperframes_airflow.backends.local_cli.run import (
    LaneItem,
    LaneOutcome,
    reclaim,
    render_local_lane,
    scratch_dir,
)
from hyperframes_airflow.backends.roots import OutputRoot, OutsideRoot, open_root
from hyperframes_airflow.contract.batch import BatchRow
from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.lifecycle import redact
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.plan import SIZING_BUCKET, row_base_name, row_digest
from hyperframes_airflow.contract.progress import iso_now
from hyperframes_airflow.contract.rows import BatchSpec, Lane, RowRef
from hyperframes_airflow.storage import RowChanged, read_planned_rows

__all__ = ["LocalBackend", "OutsideRoot", "lane_owner", "run_owner"]

#: Formats a local render can write (one file each); png-sequence is Lambda-only.
LOCAL_FORMATS: frozenset[str] = frozenset({"mp4", "mov", "webm"})


def lane_owner(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """A short, stable name for one render task's renders (what `reclaim` cleans up after):
    the run's owner prefix, then the task's, so a whole run can be reclaimed at once."""
    task = hashlib.sha256(f"{task_id}\0{map_index}".encode()).hexdigest()[:6]
    return run_owner(dag_id, run_id) + task


def run_owner(dag_id: str, run_id: str) -> str:
    """The owner prefix shared by every render of one DAG run."""
    return hashlib.sha256(f"{dag_id}\0{run_id}".encode()).hexdigest()[:6]


class LocalBackend:
    """Deploys sites into its root and renders rows with the CLI, in their own process groups.

    :param root: Where sites, outputs, records and (by default) manifests live: a directory,
        or an object-store URI (`s3://bucket/prefix`, `gs://...`, `file:///...`).
    :param conn_id: The connection that reaches an object-store root and batch (`s3://...`).
    :param toolchain: The render toolchain (default: found on first render).
    """

    kind = "local"
    bills_renders = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        conn_id: str | None = None,
        toolchain: Toolchain | None = None,
    ) -> None:
        self.root: OutputRoot = open_root(root, conn_id=conn_id)
        self.conn_id = conn_id
        self._toolchain = toolchain

    def confined(self, key: str) -> Path:
        """`<root>/<key>` of a directory root, refusing anything that resolves outside it
        (`OutsideRoot`); an object-store root has no local paths (ValueError)."""
        if not isinstance(self.root, DirectoryRoot):
            raise ValueError(f"the root {self.root.uri} is an object store: keys are not paths")
        return self.root.confined(key)

    @property
    def root_uri(self) -> str:
        return self.root.uri

    @property
    def toolchain(self) -> Toolchain:
        if self._toolchain is None:
            self._toolchain = find_toolchain()
        return self._toolchain

    # -- RenderBackend -----------------------------------------------------------------------

    def resolve(self, *, site_id: str, config: RenderConfig) -> Resolved:
        if config.format not in LOCAL_FORMATS:
            raise ValueError(
                f"format {config.format!r} is not supported by the local backend "
                f"(use one of {', '.join(sorted(LOCAL_FORMATS))}, or the lambda backend)"
            )
        return Resolved(
            digest_bucket=SIZING_BUCKET,
            project_uri=self.root.project_uri(site_id),
            config=config,
            local_root=self.root.uri,
            source_conn_id=self.conn_id,
        )

    def find_site(self, site_id: str) -> SiteHandle | None:
        return self.root.find_site(site_id)

    def site_key(self, site_id: str) -> str:
        return self.root.site_key(site_id)

    def site_composition(self, site_id: str) -> Composition:
        """The composition of a deployed site, read from the root (its entry file)."""
        return self.root.site_composition(site_id)

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Put the project in `sites/<siteId>/` unless that content is already there."""
        return self.root.deploy_site(project_dir, site_id)

    def default_manifest_uri(self, dag_id: str, run_id: str, group_id: str) -> str:
        return self.root.manifest_uri(manifest_name(dag_id, run_id, group_id))

    def settle(
        self,
        spec: BatchSpec,
        pending: Sequence[tuple[RowRef, str | None]],
        *,
        dag_id: str,
        run_id: str,
        since: datetime | None = None,
    ) -> dict[int, ManifestRow]:
        """The recorded results of a killed task's rows (its renders died with it); also
        removes what the run's killed renders left behind (their variables, compiled HTML)."""
        reclaim(run_owner(dag_id, run_id))
        settled: dict[int, ManifestRow] = {}
        for ref, _ in pending:
            record = self._read_record(ref.output_key)
            if (
                record is not None
                and record.get("runId") == run_id
                and record.get("line") == ref.line
            ):
                settled[ref.line] = ManifestRow.model_validate(record["row"])
        return settled

    # -- records -----------------------------------------------------------------------------

    def _read_record(self, output_key: str) -> dict[str, Any] | None:
        """The output's record; None when missing or unreadable (a truncated record from a
        crash must not block the row: it is simply rendered again)."""
        data = self.root.read_record(output_key)
        return data if data is not None and isinstance(data.get("row"), dict) else None

    def _reusable(
        self, record: dict[str, Any] | None, name: str, digest: str, output_key: str
    ) -> bool:
        """True only when the stored output is provably the one this row's render wrote."""
        if (
            record is None
            or record.get("executionName") != name
            or record.get("inputDigest") != digest
        ):
            return False
        return self.root.holds(output_key, record)

    # -- renders -----------------------------------------------------------------------------

    def render_lane(
        self,
        spec: BatchSpec,
        lane: Lane,
        *,
        dag_id: str,
        run_id: str,
        owner: str,
        force_rerender: bool = False,
        timeout_s: float | None = 3600.0,
        on_progress: Callable[[int, str], None] | None = None,
        on_row_start: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[ManifestRow]:
        """Render the lane's rows back to back; return a row for each row that ended.

        Rows are read again from the batch and checked (`storage.read_planned_rows`). A row
        whose output is provably already its own is reused (unless `force_rerender`). One row
        renders alone; several go through one CLI process (`render_local_lane`). A row killed
        by `should_stop` gets no row: the caller records it.
        """
        wire = RenderConfig.model_validate(spec.config).to_wire()
        reclaim(owner)  # whatever an earlier, hard-killed try of this task left behind
        done: dict[int, ManifestRow] = {}
        todo: list[_Todo] = []
        for ref, loaded in zip(lane.rows, read_planned_rows(spec, lane.rows, wire), strict=True):
            row = self._plan_row(
                spec, wire, ref, loaded, dag_id=dag_id, run_id=run_id, force=force_rerender
            )
            if isinstance(row, ManifestRow):
                done[ref.line] = row
            else:
                todo.append(row)
        if todo:
            try:
                project_dir = self.root.project_dir(spec.site_id)
            except (OSError, ValueError, tarfile.TarError) as exc:  # missing, foreign, corrupt
                for item in todo:
                    done[item.ref.line] = _row(
                        item.ref,
                        "failed-to-start",
                        execution_name=item.name,
                        error="SITE_UNAVAILABLE",
                        cause=f"{type(exc).__name__}: {exc}",
                    )
                todo = []
        if todo:
            config = RenderConfig.model_validate(spec.config)
            kwargs: dict[str, Any] = {
                "toolchain": self.toolchain,
                "project_dir": project_dir,
                "fps": config.fps,
                "quality": config.quality,
                "format": config.format,
                "on_start": on_start,
                "owner": owner,
            }
            staging = scratch_dir(owner)  # outputs wait here when the root is an object store
            try:
                for item in todo:
                    item.staging = staging / str(item.ref.line)
                    item.target = self.root.render_path(item.ref.output_key, item.staging)
                if len(todo) == 1:
                    self._render_one(todo[0], kwargs, timeout_s, on_progress, on_row_start, done)
                else:
                    self._render_many(
                        todo, kwargs, timeout_s, on_progress, on_row_start, should_stop, done
                    )
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return [done[ref.line] for ref in lane.rows if ref.line in done]

    def _plan_row(
        self,
        spec: BatchSpec,
        wire: dict[str, Any],
        ref: RowRef,
        loaded: BatchRow | RowChanged,
        *,
        dag_id: str,
        run_id: str,
        force: bool,
    ) -> ManifestRow | _Todo:
        if isinstance(loaded, RowChanged):
            return _row(ref, "failed-to-start", error="ROW_CHANGED", cause=str(loaded))
        digest = row_digest(
            base_wire=wire, bucket=spec.digest_bucket, site_id=spec.site_id, row=loaded
        )
        name = row_base_name(loaded, dag_id=dag_id, run_id=run_id, digest=digest)
        try:
            self.root.check_key(ref.output_key)
        except OutsideRoot as exc:
            return _row(
                ref, "failed-to-start", execution_name=name, error="UNSAFE_OUTPUT", cause=str(exc)
            )
        record = self._read_record(ref.output_key)
        if not force and self._reusable(record, name, digest, ref.output_key):
            assert record is not None
            return ManifestRow.model_validate(record["row"])
        mine = record is not None and record.get("executionName") == name
        attempt = int(record.get("attempt") or 1) + 1 if mine and record else 1
        replaced = None
        if record is not None and not mine and self.root.exists(ref.output_key):
            replaced = str(record.get("executionName"))
        return _Todo(ref, loaded, name, digest, attempt, replaced, run_id, dag_id)

    def _render_one(
        self,
        todo: _Todo,
        kwargs: dict[str, Any],
        timeout_s: float | None,
        on_progress: Callable[[int, str], None] | None,
        on_row_start: Callable[[int], None] | None,
        done: dict[int, ManifestRow],
    ) -> None:
        line = todo.ref.line
        if on_row_start is not None:
            on_row_start(line)
        started_at = iso_now()
        try:
            result = render_local(
                output_path=todo.target,
                variables=todo.row.variables,
                timeout_s=timeout_s,
                on_progress=(lambda text: on_progress(line, text)) if on_progress else None,
                strict_variables=False,  # checked in prepare_batch; mismatches are warnings
                **kwargs,
            )
        except (LocalRenderError, OSError) as exc:
            done[line] = self._failed(todo, exc, started_at)
            return
        done[line] = self._succeeded(todo, result, started_at)

    def _render_many(
        self,
        todos: list[_Todo],
        kwargs: dict[str, Any],
        timeout_s: float | None,
        on_progress: Callable[[int, str], None] | None,
        on_row_start: Callable[[int], None] | None,
        should_stop: Callable[[], bool],
        done: dict[int, ManifestRow],
    ) -> None:
        started: dict[int, str] = {}

        def row_start(index: int) -> None:
            started[index] = iso_now()
            if on_row_start is not None:
                on_row_start(todos[index].ref.line)

        def row_done(outcome: LaneOutcome) -> None:
            todo = todos[outcome.index]
            at = started.get(outcome.index, iso_now())
            if outcome.result is not None:
                done[todo.ref.line] = self._succeeded(todo, outcome.result, at)
            else:
                done[todo.ref.line] = self._failed(
                    todo, outcome.error or LocalRenderError("failed"), at
                )

        render_local_lane(
            items=[LaneItem(t.row.variables, t.target) for t in todos],
            timeout_per_row_s=timeout_s,
            on_row_start=row_start,
            on_row_done=row_done,
            on_progress=(lambda i, text: on_progress(todos[i].ref.line, text))
            if on_progress
            else None,
            should_stop=should_stop,
            **kwargs,
        )

    def _succeeded(self, todo: _Todo, result: LocalRenderResult, started_at: str) -> ManifestRow:
        """Publish a finished render into the root (an upload for an object store), with its
        poster frame, then record which render wrote it; a failed upload fails the row."""
        key = todo.ref.output_key
        try:
            try:
                poster: Path | None = self._poster(todo, result)
            except (LocalRenderError, OSError):  # a render never fails over its thumbnail
                poster = None
            try:
                published = self.root.publish(result.output_path, key)
            except Exception as exc:  # whatever the store raised: the row has no output
                return self._failed(todo, exc, started_at, error="UPLOAD_FAILED")
            thumbnail: str | None = None
            if poster is not None:
                with contextlib.suppress(Exception):  # the store's errors, as above
                    thumbnail = self.root.publish_thumbnail(poster, key)
            row = _row(
                todo.ref,
                "succeeded",
                execution_name=todo.name,
                output_uri=published.uri,
                frames=result.frames,
                bytes=published.bytes,
                cost_usd=0.0,
                started_at=started_at,
                ended_at=iso_now(),
                attempt=todo.attempt,
                replaced=todo.replaced,
                thumbnail_uri=thumbnail,
            )
            record = {
                "outputKey": key,
                "executionName": todo.name,
                "inputDigest": todo.digest,
                "dagId": todo.dag_id,
                "runId": todo.run_id,
                "line": todo.ref.line,
                "attempt": todo.attempt,
                "bytes": published.bytes,
                "sha256": published.sha256,
                **({"etag": published.etag} if published.etag is not None else {}),
                "row": row.model_dump(by_alias=True),
            }
            # The output is whole and in place: without its record it is only not reused.
            with contextlib.suppress(Exception):
                self.root.write_record(key, record)
            return row
        finally:
            if todo.staging is not None:
                shutil.rmtree(todo.staging, ignore_errors=True)

    def _poster(self, todo: _Todo, result: LocalRenderResult) -> Path:
        assert todo.staging is not None
        return poster_frame(
            result.output_path,
            self.root.thumbnail_path(todo.ref.output_key, todo.staging),
            at_s=(result.duration_s or 0.0) / 2,
            ffmpeg=self.toolchain.ffmpeg,
        )

    def _failed(
        self, todo: _Todo, exc: BaseException, started_at: str, *, error: str | None = None
    ) -> ManifestRow:
        if todo.staging is not None:
            shutil.rmtree(todo.staging, ignore_errors=True)
        if isinstance(exc, LocalRenderTimeout):
            status, code = "timed-out", "TIMEOUT"
        elif isinstance(exc, LocalRenderError):
            status, code = "failed", "RENDER_FAILED"
        else:  # OS errors writing the output: name too long, a folder where the file goes...
            status, code = "failed", type(exc).__name__
        cause = (
            str(exc)
            if isinstance(exc, LocalRenderError)
            else f"{exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}"
        )
        if error == "UPLOAD_FAILED":
            cause = f"could not store the output at {self.root.uri}: {cause}"
        return _row(
            todo.ref,
            status,
            execution_name=todo.name,
            error=error or code,
            cause=redact(cause, todo.row.variables),
            started_at=started_at,
            ended_at=iso_now(),
            attempt=todo.attempt,
            replaced=todo.replaced,
        )

    @staticmethod
    def stop(pid: int) -> None:
        """Kill a render's whole process tree (node, chrome, ffmpeg)."""
        kill_process_group(pid)


class _Todo:
    """A row about to render: what it is, where it goes, which render of it this is."""

    __slots__ = (
        "attempt",
        "dag_id",
        "digest",
        "name",
        "ref",
        "replaced",
        "row",
        "run_id",
        "staging",
        "target",
    )

    def __init__(
        self,
        ref: RowRef,
        row: BatchRow,
        name: str,
        digest: str,
        attempt: int,
        replaced: str | None,
        run_id: str,
        dag_id: str,
    ) -> None:
        self.ref, self.row, self.name, self.digest = ref, row, name, digest
        self.attempt, self.replaced = attempt, replaced
        self.run_id, self.dag_id = run_id, dag_id
        self.staging: Path | None = None
        """This row's own local folder (its output waits there before an upload)."""
        self.target = Path()
        """Where the CLI writes the output (set once the lane's staging folder exists)."""


def _row(ref: RowRef, status: str, **fields: Any) -> ManifestRow:
    return ManifestRow.model_validate(
        {
            "inputLine": ref.line,
            "outputKey": ref.output_key,
            "status": status,
            **{k: v for k, v in fields.items() if v is not None},
        }
    )
