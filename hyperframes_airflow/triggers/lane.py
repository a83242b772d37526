"""A lane of Lambda renders: its rows, one after the other, each started the moment the last ends.

Runs in the triggerer (deferrable renders) or, through `asyncio.run`, on a worker (not
deferrable); both are the same code. It reads the lane's lines back from the batch once and
checks each (`storage.read_planned_rows`); for each row it starts the execution under the row's
deterministic name (re-attaching instead when that name is already this try's render, see
`contract.lifecycle`), waits on the shared `ExecutionWatcher`, stops the execution at the row's
deadline, and turns the execution's history into the row's manifest row. The rows' variables
live only in this process's memory, for as long as the lane runs; nothing of them is logged or
persisted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hyperframes_airflow.contract.batch import BatchRow
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.execution import attempt_name, execution_arn
from hyperframes_airflow.contract.lifecycle import (
    MAX_ATTEMPTS,
    classify_existing,
    describe_from_history,
    result_row,
)
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.plan import encode_row_input, row_base_name, row_digest
from hyperframes_airflow.contract.progress import render_progress
from hyperframes_airflow.contract.rows import BatchSpec, LambdaStack, Lane, RenderAttempt, RowRef
from hyperframes_airflow.hooks.stack import HyperframesStackHook
from hyperframes_airflow.storage import RowChanged, read_planned_rows
from hyperframes_airflow.triggers.watcher import ExecutionWatcher, read_budget

__all__ = ["LINK_REFRESH_SECONDS", "LambdaLane", "LaneOptions", "run_side_by_side"]

#: The console link follows the lane's current row, rewritten at most this often.
LINK_REFRESH_SECONDS = 10.0


@dataclass(frozen=True)
class LaneOptions:
    """How a lane runs; everything here is a primitive from the trigger's kwargs."""

    dag_id: str
    run_id: str
    try_started_at: datetime
    force_rerender: bool = False
    render_timeout_s: float | None = 3600.0
    poll_interval: float = 10.0
    progress_interval: float = 300.0


class LambdaLane:
    """Render `lane` on the stack in `spec`; `results` grows as rows end, `current` is the
    row rendering now (what a kill must stop). `on_started` is told which row renders now
    (the console link), at most every `LINK_REFRESH_SECONDS`."""

    def __init__(
        self,
        hook: HyperframesStackHook,
        spec: BatchSpec,
        lane: Lane,
        options: LaneOptions,
        log: logging.Logger | Any,
        on_started: Callable[[RenderAttempt], Awaitable[None]] | None = None,
    ) -> None:
        if spec.stack is None:
            raise ValueError("a Lambda lane needs the stack resolved by prepare_batch")
        self.hook = hook
        self.spec = spec
        self.stack: LambdaStack = spec.stack
        self.lane = lane
        self.options = options
        self.log = log
        self.base_wire = RenderConfig.model_validate(spec.config).to_wire()
        self.on_started = on_started
        self.results: list[ManifestRow] = []
        self.current: RenderAttempt | None = None
        self._linked_at: float | None = None

    @property
    def watcher(self) -> ExecutionWatcher:
        """The event loop's shared watcher of this state machine."""
        return ExecutionWatcher.for_state_machine(
            (str(self.hook.aws_conn_id), str(self.stack.region), self.stack.state_machine_arn),
            self._list_running,
            far=self.options.poll_interval,
        )

    async def _list_running(self, pace: Any) -> set[str]:
        await pace()
        return await self.hook.async_running_executions(
            self.stack.state_machine_arn, region=self.stack.region
        )

    async def run(self) -> list[ManifestRow]:
        """Render every row still to do; returns all the lane's rows, in order.

        The rows are read back from the batch once, together (one open, one seek per row),
        so no batch read sits between one row's end and the next row's start.
        """
        todo = self.lane.rows[len(self.results) :]
        loaded = await asyncio.to_thread(self._read, todo) if todo else []
        for ref, row in zip(todo, loaded, strict=True):
            self.results.append(await self._render(ref, row))
        return self.results

    # -- one row ---------------------------------------------------------------------------

    async def _render(self, ref: RowRef, loaded: BatchRow | RowChanged) -> ManifestRow:
        if isinstance(loaded, RowChanged):
            self.log.error("Row %d: %s", ref.line, loaded)
            return _failed_to_start(ref, "ROW_CHANGED", str(loaded))
        row = loaded
        digest = row_digest(
            base_wire=self.base_wire,
            bucket=self.stack.bucket_name,
            site_id=self.spec.site_id,
            row=row,
        )
        base = row_base_name(
            row, dag_id=self.options.dag_id, run_id=self.options.run_id, digest=digest
        )
        for attempt in range(1, MAX_ATTEMPTS + 1):
            name = attempt_name(base, attempt)
            input_json = encode_row_input(
                base_wire=self.base_wire,
                bucket=self.stack.bucket_name,
                site_id=self.spec.site_id,
                row=row,
                name=name,
            )
            arn = execution_arn(self.stack.state_machine_arn, name)
            attempt_row = RenderAttempt(
                line=ref.line,
                output_key=ref.output_key,
                execution_name=name,
                execution_arn=arn,
                attempt=attempt,
            )
            # Current before the call: a kill landing while it is in flight stops it by name.
            self.current = attempt_row
            started = await self.hook.async_start_execution(
                name,
                input_json,
                state_machine_arn=self.stack.state_machine_arn,
                region=self.stack.region,
            )
            if started is not None and started != arn:
                attempt_row = attempt_row.model_copy(update={"execution_arn": started})
            if started is not None:
                self.log.info("Row %d: started %s -> %s", ref.line, name, ref.output_key)
                return await self._wait(attempt_row, row)
            self.current = None  # the name is taken: not ours to stop unless it proves ours
            described = await self.hook.async_describe_execution(arn, region=self.stack.region)
            if described is None:  # it vanished between the two calls: try the name again
                continue
            verdict = classify_existing(
                described,
                input_json=input_json,
                try_started_at=self.options.try_started_at,
                force_rerender=self.options.force_rerender,
            )
            if verdict in ("ours", "reattach"):
                self.log.info(
                    "Row %d: re-attached to %s (%s)", ref.line, name, described.get("status")
                )
                return await self._wait(attempt_row, row)
            if verdict == "reuse":
                self.log.info(
                    "Row %d: already rendered by %s with this exact input; reusing it "
                    "(set force_rerender to render again)",
                    ref.line,
                    name,
                )
                return await self._result(attempt_row, row)
            self.log.info("Row %d: passing over %s (%s)", ref.line, name, described.get("status"))
        return _failed_to_start(
            ref, "NO_FREE_NAME", f"no free execution name after {MAX_ATTEMPTS} attempts of {base!r}"
        )

    def _read(self, refs: list[RowRef]) -> list[BatchRow | RowChanged]:
        return list(read_planned_rows(self.spec, refs, self.base_wire))

    async def _wait(self, attempt: RenderAttempt, row: BatchRow) -> ManifestRow:
        """Wait for the execution to close (stopping it at its deadline) and read its result."""
        self.current = attempt
        began = time.monotonic()
        link_due = self._link_due(began)
        if link_due is not None and link_due <= began:
            await self._publish_link(attempt)
            link_due = None
        deadline = began + self.options.render_timeout_s if self.options.render_timeout_s else None
        expected = self.watcher.expected_seconds(self.spec.expected_render_seconds)
        progress_due = (
            began + self.options.progress_interval if self.options.progress_interval else None
        )
        cancelled = False
        try:
            while True:
                done = self.watcher.watch(
                    attempt.execution_arn or "", started=began, expected=expected
                )
                wake = min(
                    (t for t in (deadline, progress_due, link_due) if t is not None), default=None
                )
                try:
                    await asyncio.wait_for(
                        asyncio.shield(done),
                        timeout=None if wake is None else max(0.0, wake - time.monotonic()),
                    )
                except TimeoutError:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        await self._stop(attempt, "its render_timeout passed")
                        return await self._result(
                            attempt, row, timed_out_after_s=self.options.render_timeout_s
                        )
                    if link_due is not None and now >= link_due:
                        await self._publish_link(attempt)
                        link_due = None
                    if progress_due is not None and now >= progress_due:
                        progress_due = now + self.options.progress_interval
                        await self._log_progress(attempt)
                    continue
                events = await self._history(attempt)
                if describe_from_history(events)["status"] != "RUNNING":
                    self.watcher.record_duration(time.monotonic() - began)
                    return result_row(
                        attempt,
                        events,
                        memory_mb=self.stack.lambda_memory_mb,
                        variables=row.variables,
                    )
        except asyncio.CancelledError:
            cancelled = True
            raise  # a kill or a shutdown: `current` stays set for on_kill to stop it
        finally:
            if not cancelled:  # ended: a kill from now until the next start stops nothing
                self.current = None
            self.watcher.unwatch(attempt.execution_arn or "")

    def _link_due(self, now: float) -> float | None:
        """When the row starting now may take over the console link (None: no link kept).

        A lane of quick renders would otherwise write the link once per row; at most one
        write per `LINK_REFRESH_SECONDS` keeps it on a row still rendering or just done.
        """
        if self.on_started is None:
            return None
        if self._linked_at is None:
            return now
        return max(now, self._linked_at + LINK_REFRESH_SECONDS)

    async def _publish_link(self, attempt: RenderAttempt) -> None:
        assert self.on_started is not None
        self._linked_at = time.monotonic()
        try:
            await self.on_started(attempt)
        except Exception as exc:  # a console link is a convenience: never fail a render
            self.log.warning("Could not record the console link of line %d: %s", attempt.line, exc)

    async def _history(self, attempt: RenderAttempt) -> list[dict[str, Any]]:
        await read_budget().history.acquire()
        return await self.hook.async_history(attempt.execution_arn or "", region=self.stack.region)

    async def _result(
        self, attempt: RenderAttempt, row: BatchRow, *, timed_out_after_s: float | None = None
    ) -> ManifestRow:
        for _ in range(20):  # a stopped execution closes within moments
            events = await self._history(attempt)
            if describe_from_history(events)["status"] != "RUNNING":
                return result_row(
                    attempt,
                    events,
                    memory_mb=self.stack.lambda_memory_mb,
                    variables=row.variables,
                    timed_out_after_s=timed_out_after_s,
                )
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{attempt.execution_arn} did not close after it was stopped")

    async def _log_progress(self, attempt: RenderAttempt) -> None:
        """Log `getRenderProgress` at a modest cadence, only when the read budget allows."""
        if not read_budget().history.try_acquire():
            return
        try:
            events = await self.hook.async_history(
                attempt.execution_arn or "", region=self.stack.region
            )
        except Exception as exc:  # progress is informative; never fail the wait over it
            self.log.warning("Could not read progress of line %d: %s", attempt.line, exc)
            return
        progress = render_progress(
            {"status": "RUNNING"}, events, memory_mb=self.stack.lambda_memory_mb
        )
        total = progress.total_frames if progress.total_frames is not None else "?"
        self.log.info(
            "Row %d [RUNNING] %d%% • %s/%s frames • %s",
            attempt.line,
            round(progress.overall_progress * 100),
            progress.frames_rendered,
            total,
            progress.costs.display_cost,
        )

    async def _stop(self, attempt: RenderAttempt, why: str) -> bool:
        self.log.warning("Row %d: stopping %s: %s", attempt.line, attempt.execution_arn, why)
        return await self.hook.async_stop_execution(
            attempt.execution_arn or "",
            region=self.stack.region,
            cause=f"Stopped by Airflow: {why}.",
        )

    async def stop_current(self, why: str) -> ManifestRow | None:
        """Stop the row rendering now (a kill) and return its row, recorded as aborted."""
        attempt = self.current
        if attempt is None:
            return None
        await self._stop(attempt, why)
        events = await self.hook.async_history(
            attempt.execution_arn or "", region=self.stack.region
        )
        if not events:  # killed before its start reached Step Functions: never started
            return None
        try:
            row = result_row(attempt, events, memory_mb=self.stack.lambda_memory_mb)
        except ValueError:  # still closing: record what we did
            row = ManifestRow(
                input_line=attempt.line,
                output_key=attempt.output_key,
                status="aborted",
                execution_name=attempt.execution_name,
                execution_arn=attempt.execution_arn,
                attempt=attempt.attempt,
            )
        return row.model_copy(update={"error": row.error or "ABORTED", "cause": f"Stopped: {why}"})


async def run_side_by_side(lanes: Sequence[LambdaLane]) -> list[ManifestRow]:
    """Run `lanes` at once, each one render at a time; all their rows, by line.

    One lane failing cancels the others (their executions are left to collect_manifest,
    which settles and stops orphans), as one lane failing ends its task.
    """
    if len(lanes) == 1:
        return await lanes[0].run()
    running = [asyncio.ensure_future(lane.run()) for lane in lanes]
    try:
        await asyncio.gather(*running)
    except Exception:
        for task in running:
            task.cancel()
        raise
    return sorted((row for lane in lanes for row in lane.results), key=lambda r: r.input_line)


def _failed_to_start(ref: RowRef, error: str, cause: str) -> ManifestRow:
    return ManifestRow(
        input_line=ref.line,
        output_key=ref.output_key,
        status="failed-to-start",
        error=error,
        cause=cause,
    )


def unfinished_rows(lane: Lane, results: list[ManifestRow], why: str) -> list[ManifestRow]:
    """The lane's rows that never started, as `skipped` rows (e.g. after a kill)."""
    done = {r.input_line for r in results}
    return [
        ManifestRow(
            input_line=ref.line,
            output_key=ref.output_key,
            status="skipped",
            error="NOT_STARTED",
            cause=why,
        )
        for ref in lane.rows
        if ref.line not in done
    ]
