"""`render`: one mapped task instance per batch row; starts one render and sees it to the end."""

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

#: XCom key holding the execution this try started or re-attached to (name, ARN, attempt).
EXECUTION_KEY = "execution"


class HyperframesRenderOperator(BaseOperator):
    """Render one batch row and return its manifest row.

    `row` is the mapping entry produced by `prepare_batch`. It is deliberately not a template
    field: it carries the row's variables, which are personal data and must not show up in the
    UI's rendered-template view. The result (and, on failure, the error) is pushed to XCom under
    `row_result` so `collect_manifest` can report every row, including failed ones.

    Lambda: starts (or re-attaches to) the row's execution under a deterministic name, persists
    a console link, then defers; the trigger ends the task with the result. A retry after a
    crash re-attaches instead of starting a second render; a failed execution is started again
    under the next attempt name. Local: renders on this worker, in its own process group.
    """

    template_fields: Sequence[str] = ("local_root", "force_rerender")
    operator_extra_links = (StateMachineExecutionsDetailsLink(),)
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        row: dict[str, Any],
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
        self.row = row
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

    def _job(self, context: Context) -> RenderJob:
        row = self.row
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

    def execute(self, context: Context) -> dict[str, Any]:
        job = self._job(context)
        if self.backend == "local":
            from hyperframes_airflow.backends.local import LocalBackend

            local = make_backend("local", local_root=self.local_root)
            assert isinstance(local, LocalBackend)
            return self._execute_local(context, local, job)
        return self._execute_lambda(context, self._lambda(), job)

    def _lambda(self) -> LambdaBackend:
        from hyperframes_airflow.backends.lambda_ import LambdaBackend

        backend = make_backend(self.backend, conn_id=self.conn_id)
        if not isinstance(backend, LambdaBackend):
            raise ValueError(f"backend {self.backend!r} has no Step Functions executions")
        return backend

    # -- Lambda ---------------------------------------------------------------------------------

    def _execute_lambda(
        self, context: Context, backend: LambdaBackend, job: RenderJob
    ) -> dict[str, Any]:
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
                "Row %d (%s) already rendered by %s with this exact input; returning that result "
                "(set force_rerender to render again)",
                job.input_line,
                job.output_key,
                outcome.execution_arn,
            )
            return self._finish(context, backend.completed_row(execution))
        verb = "Started" if outcome.started else "Re-attached to"
        self.log.info(
            "%s %s for row %d -> %s",
            verb,
            outcome.execution_arn,
            job.input_line,
            execution["outputUri"],
        )
        if not self.deferrable:
            self._execution_arn = outcome.execution_arn
            return self._wait_on_worker(context, backend, execution)
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
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.render_timeout_s) if self.render_timeout_s else None,
        )

    def _wait_on_worker(
        self, context: Context, backend: LambdaBackend, execution: dict[str, Any]
    ) -> dict[str, Any]:
        """Non-deferrable mode: poll from the worker (holds a worker slot; on_kill stops it)."""
        deadline = time.monotonic() + (self.render_timeout_s or float("inf"))
        while backend.status(execution["executionArn"]) == "RUNNING":
            if time.monotonic() > deadline:
                backend.stop(execution["executionArn"], cause="render_timeout_s exceeded")
                break
            time.sleep(self.poll_interval)
        self._execution_arn = None
        return self._conclude(context, backend.completed_row(execution))

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: normally the trigger ends the task itself, so this runs
        only when `dag.test()` replays an end event (payload `"success"`/`"failed"`) or when
        the trigger was asked not to end the task."""
        if isinstance(event, dict) and "status" in event:
            return self._conclude(context, event)
        execution = context["ti"].xcom_pull(
            task_ids=self.task_id, key=EXECUTION_KEY, map_indexes=context["ti"].map_index
        )
        return self._conclude(context, self._lambda().completed_row(execution))

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """A deferral timeout fails the task before any method of ours runs: stop the render
        here so it does not outlive its task, and record the row as timed out."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            execution = context["ti"].xcom_pull(
                task_ids=self.task_id, key=EXECUTION_KEY, map_indexes=context["ti"].map_index
            )
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
                context["ti"].xcom_push(key=ROW_RESULT_KEY, value=row)
            raise

    def _conclude(self, context: Context, row: dict[str, Any]) -> dict[str, Any]:
        context["ti"].xcom_push(key=ROW_RESULT_KEY, value=row)
        if row["status"] != "succeeded":
            raise AirflowFailException(
                f"Row {row.get('inputLine')} ({row.get('outputKey')}) {row['status']}: "
                f"{row.get('error')}: {row.get('cause')}"
            )
        return row

    # -- local ----------------------------------------------------------------------------------

    def _execute_local(
        self, context: Context, backend: LocalBackend, job: RenderJob
    ) -> dict[str, Any]:
        force = as_bool(self.force_rerender, name="force_rerender")
        previous = None if force else backend.previous_result(job)
        if previous is not None:
            self.log.info(
                "Row %d (%s) already rendered with this exact input; returning that result "
                "(set force_rerender to render again)",
                job.input_line,
                job.output_key,
            )
            return self._finish(context, previous)
        self.log.info("Rendering row %d -> %s", job.input_line, backend.output_uri(job.output_key))
        try:
            result = backend.render(
                job,
                on_progress=lambda line: self.log.info("%s", line),
                on_start=self._remember_pid,
                timeout_s=self.render_timeout_s,
            )
        except RenderFailed as failure:
            if self._killed:
                failure.row.update(
                    status="aborted",
                    error="ABORTED",
                    cause="stopped because its Airflow task was killed (marked, cleared, failed)",
                )
            context["ti"].xcom_push(key=ROW_RESULT_KEY, value=failure.row)
            raise AirflowFailException(
                f"Row {job.input_line} ({job.output_key}) {failure.row['status']}: "
                f"{failure.row.get('cause') or failure.row.get('error')}"
            ) from failure
        finally:
            self._pid = None
        self.log.info(
            "Row %d done: %s (%s bytes, %s frames)",
            job.input_line,
            result["outputUri"],
            result.get("bytes"),
            result.get("frames"),
        )
        return self._finish(context, result)

    @staticmethod
    def _finish(context: Context, row: dict[str, Any]) -> dict[str, Any]:
        context["ti"].xcom_push(key=ROW_RESULT_KEY, value=row)
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
