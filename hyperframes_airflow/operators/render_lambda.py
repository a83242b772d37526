"""`render` on Lambda: a task instance that hands its lane of rows to the render trigger."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from airflow.providers.amazon.aws.links.step_function import (
    StateMachineDetailsLink,
    StateMachineExecutionsDetailsLink,
)
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import Context, conf
from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.contract.options import parse_bool
from hyperframes_airflow.contract.rows import BatchSpec, Lane, decode_rows
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID
from hyperframes_airflow.hooks.stack import HyperframesStackHook
from hyperframes_airflow.operators._lane import pull_lane
from hyperframes_airflow.triggers.lane import LambdaLane, run_side_by_side
from hyperframes_airflow.triggers.render import HyperframesRenderTrigger
from hyperframes_airflow.xcom import RESULT_KEY, SPEC_KEY

#: A backstop deferral timeout on top of the rows' own deadlines (the trigger owns those): it
#: only fires when no triggerer ran the trigger at all.
DEFERRAL_SLACK = timedelta(minutes=30)


class HyperframesLambdaRenderOperator(AwsBaseOperator[HyperframesStackHook]):
    """Render the batch rows this task was mapped to, on the HyperFrames Lambda stack.

    The task does almost nothing on the worker: it reads the batch's shared facts once,
    persists the console link and defers to `HyperframesRenderTrigger`, which starts each row's
    execution (exactly once, by deterministic name), waits, and ends the task with the rows'
    manifest rows as `return_value`. With `deferrable=False` the same lane runs here instead,
    holding the worker.

    :param label: The grid label of this task's lane, from prepare_batch's mapping; the rows
        themselves (positions and digests, no variables) are read from its `lane.<i>` XCom.
    :param prepare_task_id: The prepare_batch task whose `spec` XCom this task reads.
    :param force_rerender: Render again even when an earlier execution already succeeded.
    :param render_timeout_s: Each row's deadline; past it the execution is stopped.
    :param stop_on_kill: Stop the running execution when the task is killed.
    :param deferrable: Wait in the triggerer (default from `[operators] default_deferrable`).
    :param poll_interval: The longest gap between status sweeps, in seconds.
    :param progress_interval: How often a running render's progress is logged, in seconds.
    :param renders_at_once: Rows of the lane rendering at the same time; give the task as
        many `pool_slots` (`render_batch(renders_per_task=...)` does), so the pool still
        counts one slot per running render.
    """

    aws_hook_class = HyperframesStackHook
    #: The trigger this operator defers to (a subclass may bring its own).
    trigger_class: ClassVar[type[HyperframesRenderTrigger]] = HyperframesRenderTrigger
    template_fields: Sequence[str] = aws_template_fields("force_rerender")
    operator_extra_links = (StateMachineDetailsLink(), StateMachineExecutionsDetailsLink())
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        label: str,
        prepare_task_id: str,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        force_rerender: bool | str = False,
        render_timeout_s: float | None = 3600.0,
        stop_on_kill: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=True),
        poll_interval: float = 10.0,
        progress_interval: float = 300.0,
        renders_at_once: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self._label = label
        self.lane = Lane(rows=[])  # read in execute (`pull_lane`): this task's rows only
        self.prepare_task_id = prepare_task_id
        self.force_rerender = force_rerender
        self.render_timeout_s = render_timeout_s
        self.stop_on_kill = stop_on_kill
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        if renders_at_once < 1:
            raise ValueError(f"renders_at_once must be >= 1; got {renders_at_once}")
        self.renders_at_once = renders_at_once
        self._runners: list[LambdaLane] = []

    @property
    def label(self) -> str:
        """What the grid shows for this task (`map_index_template`): its output key(s)."""
        return self._label

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        self.lane = pull_lane(ti, self.prepare_task_id)
        spec = BatchSpec.model_validate(ti.xcom_pull(task_ids=self.prepare_task_id, key=SPEC_KEY))
        if spec.stack is None:
            raise AirflowFailException("prepare_batch did not resolve a Lambda stack")
        StateMachineDetailsLink.persist(
            context=context,
            operator=self,
            region_name=spec.stack.region,
            aws_partition=spec.stack.state_machine_arn.split(":")[1],
            state_machine_arn=spec.stack.state_machine_arn,
        )
        started = ti.start_date or datetime.now(UTC)
        trigger = self.trigger_class(
            lane=self.lane.dump(),
            spec=spec.dump(),
            render_task={
                "dag_id": ti.dag_id,
                "task_id": ti.task_id,
                "run_id": ti.run_id,
                "map_index": ti.map_index,
                "try_number": ti.try_number,
                "try_started_at": started.isoformat(),
            },
            force_rerender=parse_bool(self.force_rerender, name="force_rerender", default=False),
            stop_on_kill=self.stop_on_kill,
            render_timeout_s=self.render_timeout_s,
            poll_interval=self.poll_interval,
            progress_interval=self.progress_interval,
            renders_at_once=self.renders_at_once,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
        )
        if self.deferrable:
            per_row = timedelta(seconds=self.render_timeout_s or 86400)
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=per_row * len(self.lane.rows) + DEFERRAL_SLACK,
            )
        self._runners = trigger.runners()
        rows = asyncio.run(run_side_by_side(self._runners))
        value = [row.model_dump(by_alias=True) for row in rows]
        failed = [r for r in rows if r.status != "succeeded"]
        if failed:
            ti.xcom_push(key=RESULT_KEY, value=value)
            raise AirflowFailException(_failure_summary(failed, len(rows)))
        return value

    def execute_complete(self, context: Context, event: Any = None) -> None:
        """Only `dag.test()` comes back here (a real triggerer ends the task itself): the
        trigger already pushed the rows; fail like the trigger would have."""
        if str(event) == "failed":
            ti = context["ti"]
            rows = decode_rows(ti.xcom_pull(task_ids=self.task_id, map_indexes=ti.map_index))
            raise AirflowFailException(
                _failure_summary([r for r in rows if r.status != "succeeded"], len(rows))
            )

    def on_kill(self) -> None:
        """Not deferrable: stop the executions in flight when the task is killed."""
        if not self.stop_on_kill:
            return
        for runner in self._runners:
            arn = runner.current.execution_arn if runner.current is not None else None
            if arn:
                self.log.info("Task killed: stopping %s", arn)
                self.hook.stop_execution(arn, cause="Stopped by Airflow: its task was killed.")


def _failure_summary(failed: list[Any], total: int) -> str:
    detail = "; ".join(
        f"line {r.input_line} ({r.output_key}) {r.status}: {r.cause or r.error}"
        for r in failed[:20]
    )
    return f"{len(failed)} of {total} row(s) did not succeed: {detail}"
