"""`render` on the worker: a task instance renders its lane of rows with the hyperframes CLI."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.backends.local import LocalBackend, lane_owner
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.options import parse_bool
from hyperframes_airflow.contract.rows import BatchSpec, Lane
from hyperframes_airflow.operators._lane import pull_lane
from hyperframes_airflow.xcom import PROGRESS_KEY, RESULT_KEY, SPEC_KEY

_KILLED = "its Airflow task was killed (marked failed or success, cleared, or the run failed)"
#: The batch page's view of a running local lane is refreshed at most this often.
PROGRESS_PUSH_SECONDS = 2.0


class HyperframesLocalRenderOperator(BaseOperator):
    """Render the batch rows this task was mapped to on this worker, one after the other.

    One row renders in its own CLI process; a lane of several goes through one
    `hyperframes render --batch` process, so the CLI starts once per lane. Every render runs in
    its own process group; killing the task (mark failed, clear, run failed) kills the render
    tree, records the row as `aborted` and the rows it never reached as `skipped`.

    :param label: The grid label of this task's lane, from prepare_batch's mapping; the rows
        themselves (positions and digests, no variables) are read from its `lane.<i>` XCom.
    :param prepare_task_id: The prepare_batch task whose `spec` XCom this task reads.
    :param force_rerender: Render again even when the row's output is already its own.
    :param render_timeout_s: Each row's deadline; past it its process tree is killed.
    :param stop_on_kill: Kill the render when the task is killed.
    """

    template_fields: Sequence[str] = ("force_rerender",)
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        label: str,
        prepare_task_id: str,
        force_rerender: bool | str = False,
        render_timeout_s: float | None = 3600.0,
        stop_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._label = label
        self.lane = Lane(rows=[])  # read in execute (`pull_lane`): this task's rows only
        self.prepare_task_id = prepare_task_id
        self.force_rerender = force_rerender
        self.render_timeout_s = render_timeout_s
        self.stop_on_kill = stop_on_kill
        self._pid: int | None = None
        self._killed = False
        self._current: int | None = None

    @property
    def label(self) -> str:
        """What the grid shows for this task (`map_index_template`): its output key(s)."""
        return self._label

    def execute(self, context: Context) -> list[dict[str, Any]]:
        ti = context["ti"]
        self.lane = pull_lane(ti, self.prepare_task_id)
        spec = BatchSpec.model_validate(ti.xcom_pull(task_ids=self.prepare_task_id, key=SPEC_KEY))
        if spec.local_root is None:
            raise AirflowFailException("prepare_batch did not resolve a local root")
        backend = LocalBackend(spec.local_root, conn_id=spec.source_conn_id)
        map_index = ti.map_index if ti.map_index is not None else -1
        progress = _ProgressPusher(ti, map_index)
        progress.push({"line": None, "pct": 0})  # the task ran: the manifest can tell

        def on_row_start(line: int) -> None:
            self._current = line
            self.log.info("Rendering line %d", line)
            progress.push({"line": line, "pct": 0}, force=True)

        def on_progress(line: int, text: str) -> None:
            self.log.info("Line %d: %s", line, text)
            pct = text.split("%", 1)[0]
            progress.push({"line": line, "pct": int(pct) if pct.isdigit() else None})

        rows = backend.render_lane(
            spec,
            self.lane,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            owner=lane_owner(ti.dag_id, ti.run_id, ti.task_id, map_index),
            force_rerender=parse_bool(self.force_rerender, name="force_rerender", default=False),
            timeout_s=self.render_timeout_s,
            on_progress=on_progress,
            on_row_start=on_row_start,
            on_start=self._remember_pid,
            should_stop=lambda: self._killed,
        )
        rows = self._account_for_kill(rows)
        for row in rows:
            if row.status == "succeeded":
                self.log.info(
                    "Line %d done: %s (%s bytes, %s frames)",
                    row.input_line,
                    row.output_uri,
                    row.bytes,
                    row.frames,
                )
            else:
                self.log.error("Line %d %s: %s", row.input_line, row.status, row.cause or row.error)
        value = [row.model_dump(by_alias=True) for row in rows]
        failed = [r for r in rows if r.status != "succeeded"]
        if failed:
            ti.xcom_push(key=RESULT_KEY, value=value)
            raise AirflowFailException(f"{len(failed)} of {len(rows)} row(s) did not succeed")
        return value

    def _account_for_kill(self, rows: list[ManifestRow]) -> list[ManifestRow]:
        """After a kill: the row in flight was aborted, the rows after it never started."""
        if not self._killed:
            return rows
        done = {r.input_line: r for r in rows}
        out: list[ManifestRow] = []
        for ref in self.lane.rows:
            row = done.get(ref.line)
            if ref.line == self._current and (row is None or row.status != "succeeded"):
                row = ManifestRow(
                    input_line=ref.line,
                    output_key=ref.output_key,
                    status="aborted",
                    execution_name=row.execution_name if row else None,
                    error="ABORTED",
                    cause=f"stopped because {_KILLED}",
                )
            elif row is None:
                row = ManifestRow(
                    input_line=ref.line,
                    output_key=ref.output_key,
                    status="skipped",
                    error="NOT_STARTED",
                    cause=f"not started: {_KILLED}",
                )
            out.append(row)
        return out

    def _remember_pid(self, pid: int) -> None:
        self._pid = pid

    def on_kill(self) -> None:
        """Kill the render tree when the task is killed while rendering."""
        if not self.stop_on_kill:
            return
        self._killed = True
        if self._pid is not None:
            self.log.info("Task killed: stopping render process group %d", self._pid)
            LocalBackend.stop(self._pid)


class _ProgressPusher:
    """Pushes a lane's position (line, percentage) for the batch page, at most every 2 s."""

    def __init__(self, ti: Any, map_index: int) -> None:
        self.ti = ti
        self.map_index = map_index
        self.last = 0.0

    def push(self, value: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_PUSH_SECONDS:
            return
        self.last = now
        with contextlib.suppress(Exception):  # progress is informative; never fail a render
            self.ti.xcom_push(key=PROGRESS_KEY, value={"mapIndex": self.map_index, **value})
