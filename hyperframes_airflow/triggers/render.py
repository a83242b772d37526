"""The trigger a deferred render waits on: it ends the task, and stops the render when killed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.triggers.base import BaseTrigger, TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from hyperframes_airflow.backends.lambda_ import STOP_ERROR, execution_result_row
from hyperframes_airflow.contract.progress import render_progress
from hyperframes_airflow.triggers.watcher import ExecutionWatcher, read_budget

#: XCom key every render pushes its manifest row under (shared with the operator).
ROW_RESULT_KEY = "row_result"

#: `on_kill` stops still in flight, referenced so they run to the end (see `on_kill`).
_KILL_STOPS: set[asyncio.Future[None]] = set()


class HyperframesRenderTrigger(BaseTrigger):
    """Wait for one Step Functions render, log its progress, and finish the task from here.

    A task may hold several rows (big batches); the trigger ends the task only for its last row,
    with every row's result (`previous_results` + this one), and otherwise hands the row back
    to the operator, which starts the next one.

    Waiting goes through the shared `ExecutionWatcher`, so the triggerer makes one ListExecutions
    sweep per state machine per interval however many renders wait. When the execution ends, the
    trigger reads its history once (frames, cost, errors) and yields `TaskSuccessEvent` or
    `TaskFailedEvent` carrying the manifest row as XCom: the task ends without being resumed on a
    worker, so a row costs one worker launch instead of two.

    `on_kill` runs when a user marks the task failed or success, clears it, or fails the DAG run
    (Airflow 3.3); it stops the execution unless `stop_on_kill` is off, and not when the task is
    still deferred (a trigger being reassigned to another triggerer must not stop a live render).
    """

    def __init__(
        self,
        *,
        execution_arn: str,
        state_machine_arn: str,
        job: dict[str, Any],
        aws_conn_id: str | None,
        region_name: str | None = None,
        memory_mb: int = 10240,
        poll_interval: float = 10.0,
        progress_interval: float = 60.0,
        stop_on_kill: bool = True,
        end_from_trigger: bool = True,
        previous_results: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.execution_arn = execution_arn
        self.state_machine_arn = state_machine_arn
        self.job = job
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.memory_mb = memory_mb
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.stop_on_kill = stop_on_kill
        self.end_from_trigger = end_from_trigger
        self.previous_results = previous_results or []

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "execution_arn": self.execution_arn,
                "state_machine_arn": self.state_machine_arn,
                "job": self.job,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "memory_mb": self.memory_mb,
                "poll_interval": self.poll_interval,
                "progress_interval": self.progress_interval,
                "stop_on_kill": self.stop_on_kill,
                "end_from_trigger": self.end_from_trigger,
                "previous_results": self.previous_results,
            },
        )

    def _hook(self) -> AwsBaseHook:
        return AwsBaseHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, client_type="stepfunctions"
        )

    async def _client(self) -> AbstractAsyncContextManager[Any]:
        client: AbstractAsyncContextManager[Any] = await self._hook().get_async_conn()
        return client

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watcher = ExecutionWatcher.for_state_machine(
            conn_key=f"{self.aws_conn_id}|{self.region_name}",
            state_machine_arn=self.state_machine_arn,
            client_factory=self._client,
            interval=self.poll_interval,
        )
        done = watcher.watch(self.execution_arn)
        try:
            while True:
                try:
                    described = await asyncio.wait_for(
                        asyncio.shield(done), timeout=self.progress_interval
                    )
                    break
                except TimeoutError:
                    await self._log_progress()
        finally:
            if not done.done():
                watcher.unwatch(self.execution_arn)
        row = await self._result_row(described)
        self.log.info(
            "Render %s for line %s: %s", row["status"], self.job.get("line"), row.get("outputUri")
        )
        if row["status"] != "succeeded":
            self.log.error("%s: %s", row.get("error"), row.get("cause"))
        if not self.end_from_trigger:
            yield TriggerEvent(row)
            return
        rows: list[Any] = [*self.previous_results, row]
        if all(r["status"] == "succeeded" for r in rows):
            yield TaskSuccessEvent(xcoms={"return_value": rows, ROW_RESULT_KEY: rows})
        else:
            yield TaskFailedEvent(xcoms={ROW_RESULT_KEY: rows})

    async def _history(self, client: Any) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(50):  # the Node SDK reads at most 50 pages too
            await read_budget().history.acquire()
            kwargs: dict[str, Any] = {"executionArn": self.execution_arn, "maxResults": 1000}
            if token:
                kwargs["nextToken"] = token
            page = await client.get_execution_history(**kwargs)
            events.extend(page.get("events", []))
            token = page.get("nextToken")
            if not token:
                break
        return events

    async def _log_progress(self) -> None:
        """Log `getRenderProgress` at a modest cadence, only when the read budget allows."""
        if not read_budget().history.try_acquire():
            return
        try:
            async with await self._client() as client:
                events = await self._history(client)
        except Exception as exc:  # progress is informative; never fail the wait over it
            self.log.warning("Could not read progress: %s", exc)
            return
        progress = render_progress({"status": "RUNNING"}, events, memory_mb=self.memory_mb)
        total = progress.total_frames if progress.total_frames is not None else "?"
        self.log.info(
            "[RUNNING] %d%% • %s/%s frames • %s",
            round(progress.overall_progress * 100),
            progress.frames_rendered,
            total,
            progress.costs.display_cost,
        )

    async def _result_row(self, described: dict[str, Any]) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        with suppress(Exception):  # history only refines cost and errors
            async with await self._client() as client:
                events = await self._history(client)
        return execution_result_row(self.job, described, events, memory_mb=self.memory_mb)

    async def on_kill(self) -> None:
        """Stop the execution when a user killed the task (not on triggerer restarts).

        The work runs in its own task, shielded: Airflow 3.3.2's triggerer re-sends the
        cancellation on every state sync while `on_kill` runs, which cancels `on_kill` at its
        next await (and swallows that silently) long before `[triggerer] on_kill_timeout`; seen
        on a real stack, the StopExecution was never sent. The shielded task finishes anyway.
        """
        stop = asyncio.ensure_future(self._stop_on_kill())
        _KILL_STOPS.add(stop)
        stop.add_done_callback(_KILL_STOPS.discard)
        await asyncio.shield(stop)

    async def _stop_on_kill(self) -> None:
        if not self.stop_on_kill:
            self.log.info(
                "Task killed; leaving %s running (stop_on_kill=False)", self.execution_arn
            )
            return
        if await self._task_still_deferred():
            self.log.warning(
                "on_kill fired but the task is still deferred (trigger reassigned); "
                "not stopping %s",
                self.execution_arn,
            )
            return
        self.log.info("Task killed: stopping %s", self.execution_arn)
        try:
            async with await self._client() as client:
                await client.stop_execution(
                    executionArn=self.execution_arn,
                    error=STOP_ERROR,
                    cause="Stopped because its Airflow task was killed (marked, cleared, failed).",
                )
        except Exception as exc:  # already closed or missing is fine: stopping is idempotent
            self.log.info("StopExecution for %s: %s", self.execution_arn, exc)

    async def _task_still_deferred(self) -> bool:
        ti = self.task_instance
        if ti is None:
            return False
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
            from asgiref.sync import sync_to_async

            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
            )
        except Exception:  # cannot tell: a user action is the documented reason on_kill runs
            return False
        found = (states or {}).get(ti.run_id) or {}
        return any(str(state) == "deferred" for state in found.values())
