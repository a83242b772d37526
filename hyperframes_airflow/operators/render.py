"""`render`: one mapped task instance per batch row (or per few rows, for very big batches)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.step_function import StateMachineExecutionsDetailsLink
from airflow.sdk import BaseOperator, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException, TaskDeferralTimeout

from hyperframes_airflow.backends import make_backend
from hyperframes_airflow.backends.base import RenderFailed, RenderJob
from hyperframes_airflow.contract.batch import read_row_variables
from hyperframes_airflow.operators._coerce import as_bool
from hyperframes_airflow.triggers.render import ROW_RESULT_KEY, HyperframesRenderTrigger

if TYPE_CHECKING:
    from hyperframes_airflow.backends.lambda_ import LambdaBackend
    from hyperframes_airflow.backends.local import LocalBackend

#: XCom key holding the execution this task is waiting on (line, name, ARN, attempt).
EXECUTION_KEY = "execution"


class HyperframesRenderOperator(BaseOperator):
    """Render the batch rows this task was mapped to, one after the other, and return their
    manifest rows.

    Usually a task holds one row; above Airflow's `max_map_length` prepare_batch gives each task
    a few consecutive rows, which run one at a time, so a pool slot still means one running
    render. After each row the results so far are pushed to XCom under `row_result` (a list),
    so `collect_manifest` can report every row, even when the task is killed half-way.

    `rows` are the mapping entries produced by `prepare_batch`. They are deliberately not a
    template field: they carry variables, which are personal data and must not show up in the
    UI's rendered-template view.

    Lambda: starts (or re-attaches to) each row's execution under a deterministic name, persists
    a console link, then defers; the trigger ends the task with the results after the last row.
    A retry after a crash re-attaches instead of starting a second render; a failed execution
    is started again under the next attempt name; a succeeded one is reused. Local: renders on
    this worker, each render in its own process group.
    """

    template_fields: Sequence[str] = ("local_root", "force_rerender")
    operator_extra_links = (StateMachineExecutionsDetailsLink(),)
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        rows: list[dict[str, Any]],
        backend: str = "local",
        conn_id: str = "hyperframes_default",
        local_root: str | None = None,
        force_rerender: bool | str = False,
        render_timeout_s: float | None = 3600.0,
        stop_on_kill: bool = True,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        progress_interval: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not rows:
            raise ValueError("a render task needs at least one row")
        self.rows = rows
        self.backend = backend
        self.conn_id = conn_id
        self.local_root = local_root
        self.force_rerender = force_rerender
        self.render_timeout_s = render_timeout_s
        self.stop_on_kill = stop_on_kill
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self._pid: int | None = None
        self._execution_arn: str | None = None
        self._killed = False

    @property
    def label(self) -> str:
        """What the grid shows for this task (`map_index_template`): the output key."""
        first = str(self.rows[0]["outputKey"])
        return first if len(self.rows) == 1 else f"{first} (+{len(self.rows) - 1} more)"

    # -- the row loop ---------------------------------------------------------------------------

    def execute(self, context: Context) -> list[dict[str, Any]]:
        self._push(context, [])
        return self._run(context, [])

    def _run(self, context: Context, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Render rows from `len(results)` on; defers (and comes back) for Lambda renders."""
        for position in range(len(results), len(self.rows)):
            if self._killed:
                break
            job = self._job(context, self.rows[position])
            if self.backend == "local":
                results.append(self._render_local(self._local(), job))
            else:
                results.append(self._render_lambda(context, job, results))
            self._push(context, results)
        return self._conclude(context, results)

    def execute_complete(self, context: Context, event: Any = None) -> list[dict[str, Any]]:
        """Back from the trigger with one row's result: record it and go on with the next row.

        The results so far come from XCom, not from the deferral's kwargs: `dag.test()` replays
        an end event as a resume without them (payload `"success"`/`"failed"`), and then the
        row's result is rebuilt from the execution itself."""
        ti = context["ti"]
        results = list(self._pull(context, ROW_RESULT_KEY) or [])
        if isinstance(event, dict) and "status" in event:
            row = event
        else:
            row = self._lambda().completed_row(self._pull(context, EXECUTION_KEY))
        results.append(row)
        self._push(context, results)
        self.log.info(
            "Row %s %s (%d of %d)",
            row.get("inputLine"),
            row["status"],
            len(results),
            len(self.rows),
        )
        del ti
        return self._run(context, results)

    def _conclude(self, context: Context, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._push(context, results)
        failed = [r for r in results if r["status"] != "succeeded"]
        if failed:
            detail = "; ".join(
                f"line {r.get('inputLine')} ({r.get('outputKey')}) {r['status']}: "
                f"{r.get('cause') or r.get('error')}"
                for r in failed
            )
            raise AirflowFailException(f"{len(failed)} of {len(self.rows)} row(s) failed: {detail}")
        return results

    def _push(self, context: Context, results: list[dict[str, Any]]) -> None:
        context["ti"].xcom_push(key=ROW_RESULT_KEY, value=results)

    def _pull(self, context: Context, key: str) -> Any:
        ti = context["ti"]
        return ti.xcom_pull(task_ids=self.task_id, key=key, map_indexes=ti.map_index)

    def _job(self, context: Context, row: dict[str, Any]) -> RenderJob:
        return RenderJob(
            input_line=int(row["line"]),
            output_key=str(row["outputKey"]),
            execution_name=str(row["executionName"]),
            site_id=str(row["siteId"]),
            config=row.get("config") or {},
            variables=row.get("variables") or self._resolve_variables(row.get("variablesRef")),
            input_digest=str(row.get("digest", "")),
            attempt=int(context["ti"].try_number),
        )

    def _resolve_variables(self, ref: dict[str, Any] | None) -> dict[str, Any]:
        """Read a big row's variables from the batch file (prepare_batch kept them out of XCom)."""
        if not ref:
            return {}
        source = ObjectStoragePath(str(ref["source"]), conn_id=self.conn_id)
        with source.open("rb") as handle:
            variables = read_row_variables(handle, int(ref["line"]))
        if variables is None:
            raise AirflowFailException(
                f"Line {ref['line']} of {ref['source']} changed since prepare_batch read it"
            )
        return variables

    # -- Lambda ---------------------------------------------------------------------------------

    def _lambda(self) -> LambdaBackend:
        from hyperframes_airflow.backends.lambda_ import LambdaBackend

        backend = make_backend(self.backend, conn_id=self.conn_id)
        if not isinstance(backend, LambdaBackend):
            raise ValueError(f"backend {self.backend!r} has no Step Functions executions")
        return backend

    def _render_lambda(
        self, context: Context, job: RenderJob, results: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Start (or re-attach to) one row's execution; defer until it ends (deferrable), or
        poll from this worker. Returns the row's result unless it defers."""
        backend = self._lambda()
        force = as_bool(self.force_rerender, name="force_rerender")
        outcome = backend.ensure_started(job, force_rerender=force)
        execution = {
            "line": job.input_line,
            "outputKey": job.output_key,
            "outputUri": backend.output_uri(job.output_key),
            "executionName": outcome.execution_name,
            "executionArn": outcome.execution_arn,
            "attempt": outcome.attempt,
        }
        context["ti"].xcom_push(key=EXECUTION_KEY, value=execution)
        StateMachineExecutionsDetailsLink.persist(
            context=context,
            operator=self,
            region_name=backend.region,
            aws_partition=outcome.execution_arn.split(":")[1],
            execution_arn=outcome.execution_arn,
        )
        if outcome.already_succeeded:
            self.log.info(
                "Row %d (%s) already rendered by %s with this exact input; reusing that result "
                "(set force_rerender to render again)",
                job.input_line,
                job.output_key,
                outcome.execution_arn,
            )
            return backend.completed_row(execution)
        self.log.info(
            "%s %s for row %d -> %s",
            "Started" if outcome.started else "Re-attached to",
            outcome.execution_arn,
            job.input_line,
            execution["outputUri"],
        )
        if not self.deferrable:
            return self._wait_on_worker(backend, execution)
        last = len(results) == len(self.rows) - 1
        self.defer(
            trigger=HyperframesRenderTrigger(
                execution_arn=outcome.execution_arn,
                state_machine_arn=backend.state_machine_arn,
                job=execution,
                aws_conn_id=self.conn_id,
                region_name=backend.region,
                memory_mb=backend.lambda_memory_mb,
                poll_interval=self.poll_interval,
                progress_interval=self.progress_interval,
                stop_on_kill=self.stop_on_kill,
                end_from_trigger=last,
                previous_results=results if last else None,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.render_timeout_s) if self.render_timeout_s else None,
        )

    def _wait_on_worker(self, backend: LambdaBackend, execution: dict[str, Any]) -> dict[str, Any]:
        """Non-deferrable mode: poll from the worker (holds a worker slot; on_kill stops it)."""
        self._execution_arn = execution["executionArn"]
        deadline = time.monotonic() + (self.render_timeout_s or float("inf"))
        while backend.status(execution["executionArn"]) == "RUNNING":
            if time.monotonic() > deadline:
                backend.stop(execution["executionArn"], cause="render_timeout_s exceeded")
                break
            time.sleep(self.poll_interval)
        self._execution_arn = None
        return backend.completed_row(execution)

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """A deferral timeout fails the task before any method of ours runs: stop the render
        here so it does not outlive its task, and record the row as timed out."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            execution = self._pull(context, EXECUTION_KEY)
            if execution:
                backend = self._lambda()
                backend.stop(
                    execution["executionArn"], cause="Airflow deferral timeout (render_timeout_s)"
                )
                row = backend.completed_row(execution)
                row.update(
                    status="timed-out",
                    error="TIMEOUT",
                    cause=f"render did not finish within {self.render_timeout_s} s",
                )
                self._push(context, [*(self._pull(context, ROW_RESULT_KEY) or []), row])
            raise

    # -- local ----------------------------------------------------------------------------------

    def _local(self) -> LocalBackend:
        from hyperframes_airflow.backends.local import LocalBackend

        backend = make_backend("local", local_root=self.local_root)
        assert isinstance(backend, LocalBackend)
        return backend

    def _render_local(self, backend: LocalBackend, job: RenderJob) -> dict[str, Any]:
        force = as_bool(self.force_rerender, name="force_rerender")
        previous = None if force else backend.previous_result(job)
        if previous is not None:
            self.log.info(
                "Row %d (%s) already rendered with this exact input; reusing that result "
                "(set force_rerender to render again)",
                job.input_line,
                job.output_key,
            )
            return previous
        self.log.info("Rendering row %d -> %s", job.input_line, backend.output_uri(job.output_key))
        try:
            row = backend.render(
                job,
                on_progress=lambda line: self.log.info("%s", line),
                on_start=self._remember_pid,
                timeout_s=self.render_timeout_s,
            )
        except RenderFailed as failure:
            row = failure.row
            if self._killed:
                row.update(
                    status="aborted",
                    error="ABORTED",
                    cause="stopped because its Airflow task was killed (marked, cleared, failed)",
                )
            self.log.error("Row %d %s: %s", job.input_line, row["status"], row.get("cause"))
            return row
        finally:
            self._pid = None
        self.log.info(
            "Row %d done: %s (%s bytes, %s frames)",
            job.input_line,
            row["outputUri"],
            row.get("bytes"),
            row.get("frames"),
        )
        return row

    def _remember_pid(self, pid: int) -> None:
        self._pid = pid

    def on_kill(self) -> None:
        """Stop the render when the task is killed while running on a worker."""
        if not self.stop_on_kill:
            return
        self._killed = True
        if self._pid is not None:
            self.log.info("Task killed: stopping render process group %d", self._pid)
            from hyperframes_airflow.backends.local import LocalBackend

            LocalBackend.stop(self._pid)
        if self._execution_arn is not None:
            self.log.info("Task killed: stopping %s", self._execution_arn)
            self._lambda().stop(self._execution_arn, cause="Airflow task killed")
