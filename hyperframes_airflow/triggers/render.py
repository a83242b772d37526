"""The trigger a Lambda render task defers to: it renders the task's lane and ends the task.

The worker defers at once (it only knows which rows are its own); everything else happens
here, in the triggerer: reading each row back from the batch, starting its execution, waiting,
stopping it at its deadline, and building its manifest row. The rows' results are pushed as the
task's `return_value` XCom (the one result channel: `contract.rows.decode_rows`), then the
trigger ends the task itself (`TaskSuccessEvent`/`TaskFailedEvent`), so a task costs one worker
launch however many rows its lane holds.

`on_kill` (Airflow 3.3: a user marked the task failed or success, cleared it, or failed the
run) stops the render in flight, unless `stop_on_kill` is off, and records what the lane did,
so the manifest has every row's true status even when a lane is killed half-way. A trigger that
is re-created (triggerer restart, another triggerer) starts the lane over and finds every row it
already started under its deterministic name: no row is ever rendered twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.links.step_function import StateMachineExecutionsDetailsLink
from airflow.triggers.base import BaseTrigger, TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.rows import BatchSpec, Lane, RenderAttempt
from hyperframes_airflow.hooks.stack import HyperframesStackHook
from hyperframes_airflow.triggers.lane import (
    LambdaLane,
    LaneOptions,
    run_side_by_side,
    unfinished_rows,
)
from hyperframes_airflow.xcom import RESULT_KEY

__all__ = ["HyperframesRenderTrigger"]

#: `on_kill` work still in flight, referenced so it runs to the end (see `on_kill`).
_KILL_WORK: set[asyncio.Future[None]] = set()
_KILLED_WHY = "its Airflow task was killed (marked failed or success, cleared, or the run failed)"


class HyperframesRenderTrigger(BaseTrigger):
    """Render one lane of rows on the Lambda stack and end the task with their results.

    :param lane: The task's rows (`contract.rows.Lane.dump()`): lines, offsets, digests, keys.
    :param spec: The batch's shared facts (`contract.rows.BatchSpec.dump()`), no variables.
    :param render_task: `dag_id`, `task_id`, `run_id`, `map_index` of the task, and `try_started_at`
        (ISO time the try started: executions started later are this try's own).
    :param aws_conn_id: The connection, as for the Amazon provider's triggers.
    :param region_name: Region override (the stack's region is in `spec`).
    :param verify: SSL verification, as for every AWS hook.
    :param botocore_config: botocore client configuration, as for every AWS hook.
    :param force_rerender: Render rows again even when an earlier execution succeeded.
    :param stop_on_kill: Stop the render when the task is killed (False: let it finish).
    :param render_timeout_s: Each row's deadline; past it the execution is stopped.
    :param poll_interval: The longest gap between status sweeps.
    :param progress_interval: How often a running render's progress is logged.
    :param renders_at_once: Rows rendering at the same time (the task's `pool_slots`): the
        lane runs as that many lanes side by side (`Lane.side_by_side`), each one render at a
        time.
    """

    def __init__(
        self,
        *,
        lane: dict[str, Any],
        spec: dict[str, Any],
        render_task: dict[str, Any],
        aws_conn_id: str | None,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        force_rerender: bool = False,
        stop_on_kill: bool = True,
        render_timeout_s: float | None = 3600.0,
        poll_interval: float = 10.0,
        progress_interval: float = 300.0,
        renders_at_once: int = 1,
    ) -> None:
        super().__init__()
        self.lane = lane
        self.spec = spec
        self.render_task = render_task
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.force_rerender = force_rerender
        self.stop_on_kill = stop_on_kill
        self.render_timeout_s = render_timeout_s
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.renders_at_once = renders_at_once
        self._runners: list[LambdaLane] | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "lane": self.lane,
                "spec": self.spec,
                "render_task": self.render_task,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "force_rerender": self.force_rerender,
                "stop_on_kill": self.stop_on_kill,
                "render_timeout_s": self.render_timeout_s,
                "poll_interval": self.poll_interval,
                "progress_interval": self.progress_interval,
                "renders_at_once": self.renders_at_once,
            },
        )

    @property
    def hook(self) -> HyperframesStackHook:
        return HyperframesStackHook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        )

    def runners(self) -> list[LambdaLane]:
        """The task's lanes (one, or `renders_at_once` side by side), built once. Only the
        first keeps the console link, so it is written at most every `LINK_REFRESH_SECONDS`."""
        if self._runners is None:
            spec = BatchSpec.model_validate(self.spec)
            options = LaneOptions(
                dag_id=str(self.render_task["dag_id"]),
                run_id=str(self.render_task["run_id"]),
                try_started_at=datetime.fromisoformat(str(self.render_task["try_started_at"])),
                force_rerender=self.force_rerender,
                render_timeout_s=self.render_timeout_s,
                poll_interval=self.poll_interval,
                progress_interval=self.progress_interval,
            )
            hook = self.hook
            lanes = Lane.model_validate(self.lane).side_by_side(self.renders_at_once)
            self._runners = [
                LambdaLane(
                    hook,
                    spec,
                    lane,
                    options,
                    self.log,
                    on_started=self._publish_link if i == 0 else None,
                )
                for i, lane in enumerate(lanes)
            ]
        return self._runners

    async def run(self) -> AsyncIterator[TriggerEvent]:
        rows = await run_side_by_side(self.runners())
        await self._publish(rows)
        failed = [r for r in rows if r.status != "succeeded"]
        for row in failed:
            self.log.error("Row %d %s: %s: %s", row.input_line, row.status, row.error, row.cause)
        yield TaskFailedEvent() if failed else TaskSuccessEvent()

    async def _publish(self, rows: list[ManifestRow]) -> None:
        """Push the rows as the task's `return_value` (the one result channel)."""
        await self._set_xcom(RESULT_KEY, [row.model_dump(by_alias=True) for row in rows])

    async def _publish_link(self, attempt: RenderAttempt) -> None:
        """The console link to the row rendering now, as the Amazon provider persists it."""
        arn = attempt.execution_arn or ""
        value = {
            "region_name": arn.split(":")[3] if arn.count(":") >= 3 else self.region_name,
            "aws_domain": StateMachineExecutionsDetailsLink.get_aws_domain(arn.split(":")[1]),
            "execution_arn": arn,
        }
        await self._set_xcom(StateMachineExecutionsDetailsLink.key, value)

    async def _set_xcom(self, key: str, value: Any) -> None:
        from airflow.sdk.execution_time.xcom import XCom
        from asgiref.sync import sync_to_async

        await sync_to_async(XCom.set)(
            key=key,
            value=value,
            dag_id=self.render_task["dag_id"],
            task_id=self.render_task["task_id"],
            run_id=self.render_task["run_id"],
            map_index=int(self.render_task.get("map_index", -1)),
        )

    async def on_kill(self) -> None:
        """Stop the render in flight and record the lane's rows (Airflow 3.3 user actions).

        The work runs in its own task, shielded: the 3.3.2 triggerer re-sends the cancellation
        on every state sync while `on_kill` runs, which would cancel it at its next await long
        before `[triggerer] on_kill_timeout` (seen on a real stack: no StopExecution was sent).
        """
        work = asyncio.ensure_future(self._on_kill())
        _KILL_WORK.add(work)
        work.add_done_callback(_KILL_WORK.discard)
        await asyncio.shield(work)

    async def _on_kill(self) -> None:
        runners = self._runners
        if runners is None:
            return
        if await self._task_still_deferred():
            self.log.warning(
                "on_kill fired but the task is still deferred (trigger moved); not stopping"
            )
            return
        rows = [row for runner in runners for row in runner.results]
        running = [runner for runner in runners if runner.current is not None]
        if self.stop_on_kill:
            stopped = await asyncio.gather(*(r.stop_current(_KILLED_WHY) for r in running))
            rows.extend(row for row in stopped if row is not None)
        else:
            for runner in running:
                self.log.info(
                    "Task killed; leaving %s running (stop_on_kill=False)",
                    runner.current.execution_arn if runner.current else None,
                )
        rows.extend(
            unfinished_rows(Lane.model_validate(self.lane), rows, f"not started: {_KILLED_WHY}")
        )
        rows.sort(key=lambda r: r.input_line)
        try:
            await self._publish(rows)
        except Exception as exc:  # the manifest falls back to the executions themselves
            self.log.warning("Could not record the killed lane's rows: %s", exc)

    async def _task_still_deferred(self) -> bool:
        """A trigger being moved to another triggerer must not stop a live render."""
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
            from asgiref.sync import sync_to_async

            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=self.render_task["dag_id"],
                task_ids=[self.render_task["task_id"]],
                run_ids=[self.render_task["run_id"]],
                map_index=int(self.render_task.get("map_index", -1)),
            )
        except Exception:  # cannot tell: a user action is the documented reason on_kill runs
            return False
        found = (states or {}).get(self.render_task["run_id"]) or {}
        return any(str(state) == "deferred" for state in found.values())
