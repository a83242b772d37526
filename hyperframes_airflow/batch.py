"""`render_batch`: the whole batch flow as one TaskGroup a DAG author wires in with one call.

prepare_batch [-> approve_cost] -> deploy_site -> render (mapped: one task per row, or per lane)
-> collect_manifest. `approve_cost` is there when the cost gate can block (a billed backend
with `max_cost_usd` set): above the limit a person approves the batch instead of it failing.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import TaskGroup

from hyperframes_airflow.backends import check_backend
from hyperframes_airflow.contract.approval import parse_approval_mode
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID
from hyperframes_airflow.operators.approval import HyperframesCostApprovalOperator
from hyperframes_airflow.operators.deploy import HyperframesDeploySiteOperator
from hyperframes_airflow.operators.manifest import (
    HyperframesCollectManifestOperator,
    manifest_asset,
)
from hyperframes_airflow.operators.prepare import HyperframesPrepareBatchOperator

__all__ = ["DEFAULT_POOL", "RENDER_OPERATORS", "render_batch"]

DEFAULT_POOL = "hyperframes_renders"

#: The render operator of each backend, imported only when a DAG uses that backend: a local
#: DAG's parse (every task parses its DAG file) then never loads boto3 or the Amazon provider.
RENDER_OPERATORS: dict[str, str | type[Any]] = {
    "lambda": "hyperframes_airflow.operators.render_lambda.HyperframesLambdaRenderOperator",
    "local": "hyperframes_airflow.operators.render_local.HyperframesLocalRenderOperator",
}


def render_batch(
    *,
    project_dir: str | None = None,
    batch: str,
    config: RenderConfig | dict[str, Any],
    backend: str = "local",
    conn_id: str = DEFAULT_CONN_ID,
    region_name: str | None = None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
    local_root: str | None = None,
    allowed_roots: Sequence[str] | None = None,
    max_concurrent: int = 2,
    pool: str | None = DEFAULT_POOL,
    strict: bool | str = True,
    strict_variables: bool | str = False,
    dry_run: bool | str = False,
    manifest_path: str | None = None,
    max_cost_usd: float | str | None = None,
    confirm_cost: bool | str = False,
    force_rerender: bool | str = False,
    fail_on_row_failure: bool | str = True,
    render_timeout: timedelta = timedelta(minutes=30),
    render_retries: int = 0,
    render_retry_delay: timedelta | None = None,
    deferrable: bool = True,
    stop_on_kill: bool = True,
    poll_interval: float = 10.0,
    progress_interval: float = 300.0,
    rows_per_task: int | None = None,
    renders_per_task: int = 1,
    group_id: str = "render_batch",
    site_id: str | None = None,
    cost_approval: str = "manual-runs",
    approval_timeout: timedelta = timedelta(hours=24),
    rerun_of: str | None = None,
) -> TaskGroup:
    """Build prepare -> deploy -> render (mapped) -> collect inside a TaskGroup and return it.

    String arguments are templated (e.g. `batch="s3://b/digests/{{ ds }}.jsonl"`, or
    `dry_run="{{ params.dry_run }}"`).

    :param project_dir: The HyperFrames project directory (contains index.html).
    :param site_id: Or a site already deployed (`hyperframes-airflow deploy`): workers then
        need no project files. Templated: a form may give either (a blank value is unset).
    :param batch: The JSONL batch (local path, `file://` or `s3://`); one row per video.
    :param config: The render config (width, height, fps, format...).
    :param backend: `local` (renders on the worker with the CLI) or `lambda` (Step Functions).
    :param conn_id: The `aws` connection: the Lambda stack, and object-store batches.
    :param region_name: Region override for the stack.
    :param verify: SSL verification for AWS calls.
    :param botocore_config: botocore client configuration for AWS calls.
    :param local_root: The local backend's root: sites, outputs at `<root>/<outputKey>`.
    :param allowed_roots: Directories and URI prefixes that templated paths (a trigger form's
        project, batch, manifest path, local root) may point into; the backend's own root
        counts for batches and manifests. Also `$HYPERFRAMES_ALLOWED_ROOTS` (comma-separated).
    :param max_concurrent: Renders of this batch at once, even without a pool.
    :param pool: The pool whose slots cap running renders across all runs; create it with
        `include_deferred` (`hyperframes-airflow pools`), or deferred renders are not counted.
    :param strict: Fail before deploying when any row is invalid (else render the rest).
    :param strict_variables: Variables that do not match the template make their row invalid.
    :param dry_run: Validate and estimate; deploy and render nothing.
    :param manifest_path: Where the manifest goes (default: next to the outputs, one per
        group and run).
    :param max_cost_usd: The estimate above which the batch does not render unconfirmed.
    :param confirm_cost: Render even above `max_cost_usd` (scheduled runs).
    :param force_rerender: Render rows again even when already rendered with this input.
    :param fail_on_row_failure: Fail the run when any row did not succeed.
    :param render_timeout: Each row's deadline; a render past it is stopped.
    :param render_retries: Retries of a render task (a retry re-attaches to its execution
        instead of starting a second one).
    :param render_retry_delay: Delay between those retries (default: Airflow's).
    :param deferrable: Lambda renders wait in the triggerer, freeing the worker.
    :param stop_on_kill: Stop a render whose task is killed (marked, cleared, run failed).
    :param poll_interval: The longest gap between Lambda status sweeps, in seconds.
    :param progress_interval: How often a running Lambda render's progress is logged.
    :param rows_per_task: Rows each render task renders back to back in one pool slot
        (lanes); automatic above Airflow's `max_map_length`.
    :param renders_per_task: Lambda only: rows each render task renders at the same time, in
        as many pool slots (`pool_slots`), so a batch needs that many times fewer task
        launches; the task's rows (`rows_per_task`, at least this many) are split among them.
        The pool still counts one slot per running render, and `max_concurrent` caps renders.
    :param group_id: The TaskGroup's id (several groups may share a DAG).
    :param cost_approval: Who decides a batch above `max_cost_usd` that nothing confirmed:
        `manual-runs` (a person approves runs a person triggered, in Airflow's Required
        actions; scheduled runs do not render), `always` (every such run waits for a person)
        or `never` (no run waits: it ends without rendering).
    :param approval_timeout: How long a person has to answer; no answer rejects.
    :param rerun_of: A manifest URI (templated): render only that run's failed, aborted and
        timed-out rows, read again from its batch, under the same output keys.
    """
    check_backend(backend)
    if project_dir is None and site_id is None:
        raise ValueError("render_batch needs project_dir or site_id")
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1; got {max_concurrent}")
    if rows_per_task is not None and rows_per_task < 1:
        raise ValueError(f"rows_per_task must be >= 1; got {rows_per_task}")
    rows_per_task = _check_renders_per_task(
        renders_per_task,
        backend=backend,
        rows_per_task=rows_per_task,
        max_concurrent=max_concurrent,
    )
    if "{{" not in cost_approval:
        parse_approval_mode(cost_approval)
    settings: dict[str, Any] = {
        "backend": backend,
        "conn_id": conn_id,
        "region_name": region_name,
        "verify": verify,
        "botocore_config": botocore_config,
        "local_root": local_root,
        "allowed_roots": allowed_roots,
    }
    with TaskGroup(group_id=group_id) as group:
        prepare = HyperframesPrepareBatchOperator(
            task_id="prepare_batch",
            project_dir=project_dir,
            site_id=site_id,
            batch=batch,
            config=config,
            strict=strict,
            strict_variables=strict_variables,
            dry_run=dry_run,
            max_cost_usd=max_cost_usd,
            confirm_cost=confirm_cost,
            rows_per_task=rows_per_task,
            rerun_of=rerun_of,
            retries=0,
            **settings,
        )
        approve = (
            HyperframesCostApprovalOperator(
                task_id="approve_cost",
                prepare_task_id=prepare.task_id,
                cost_approval=cost_approval,
                response_timeout=approval_timeout,
                retries=0,
            )
            if _gate_can_block(backend, max_cost_usd)
            else None
        )
        deploy = HyperframesDeploySiteOperator(
            task_id="deploy_site",
            project_dir=project_dir,
            site_id=site_id,
            dry_run=dry_run,
            **settings,
        )
        render = _render_operator(
            backend,
            prepare_task_id=prepare.task_id,
            force_rerender=force_rerender,
            render_timeout=render_timeout,
            stop_on_kill=stop_on_kill,
            deferrable=deferrable,
            poll_interval=poll_interval,
            progress_interval=progress_interval,
            settings=settings,
            renders_per_task=renders_per_task,
            task_kwargs={
                "max_active_tis_per_dagrun": max_concurrent // renders_per_task,
                "pool_slots": renders_per_task,
                "map_index_template": "{{ task.label }}",
                "retries": render_retries,
                **({"pool": pool} if pool else {}),
                **({"retry_delay": render_retry_delay} if render_retry_delay is not None else {}),
            },
        ).expand_kwargs(prepare.output)
        collect = HyperframesCollectManifestOperator(
            task_id="collect_manifest",
            prepare_task_id=prepare.task_id,
            deploy_task_id=deploy.task_id,
            render_task_id=render.task_id,
            group_id=group_id,
            approval_task_id=approve.task_id if approve is not None else None,
            manifest_path=manifest_path,
            fail_on_row_failure=fail_on_row_failure,
            retries=0,
            # An Asset event per manifest written by a collect that succeeds (a worker ends it:
            # events are only emitted then), so downstream DAGs can run on the batch's outputs.
            outlets=[manifest_asset(group.dag_id, group_id)] if group.dag_id else [],
            **settings,
        )
        if approve is not None:
            prepare >> approve >> deploy
        else:
            prepare >> deploy
        deploy >> render >> collect
        # A teardown, so that marking the DAG run failed (which skips pending tasks) still runs
        # it: the manifest is written on every path. It fails the run when a row failed.
        collect.as_teardown(on_failure_fail_dagrun=True)
    return group


def _check_renders_per_task(
    renders_per_task: int, *, backend: str, rows_per_task: int | None, max_concurrent: int
) -> int | None:
    """Refuse what cannot hold `renders_per_task` renders per task; returns the rows per task
    (at least one per render)."""
    if renders_per_task < 1:
        raise ValueError(f"renders_per_task must be >= 1; got {renders_per_task}")
    if renders_per_task == 1:
        return rows_per_task
    if backend != "lambda":
        raise ValueError(
            "renders_per_task is for backend='lambda'; local renders share the worker's CPU "
            "(use max_concurrent and rows_per_task)"
        )
    if rows_per_task is not None and rows_per_task < renders_per_task:
        raise ValueError(
            f"rows_per_task ({rows_per_task}) must be >= renders_per_task ({renders_per_task}): "
            "each render of a task needs a row"
        )
    if max_concurrent < renders_per_task:
        raise ValueError(
            f"max_concurrent ({max_concurrent}) must be >= renders_per_task "
            f"({renders_per_task}): one task renders that many at once"
        )
    return rows_per_task or renders_per_task


def _gate_can_block(backend: str, max_cost_usd: float | str | None) -> bool:
    """Only renders that bill can be over budget, and only when a limit is given."""
    from hyperframes_airflow.backends.lambda_ import LambdaBackend
    from hyperframes_airflow.backends.local import LocalBackend

    billed = {"lambda": LambdaBackend.bills_renders, "local": LocalBackend.bills_renders}
    return max_cost_usd is not None and billed[backend]


def _render_operator(
    backend: str,
    *,
    prepare_task_id: str,
    force_rerender: bool | str,
    render_timeout: timedelta,
    stop_on_kill: bool,
    deferrable: bool,
    poll_interval: float,
    progress_interval: float,
    renders_per_task: int,
    settings: dict[str, Any],
    task_kwargs: dict[str, Any],
) -> Any:
    """The backend's render operator, `partial`-ly applied (the rows come from the mapping)."""
    common: dict[str, Any] = {
        "task_id": "render",
        "prepare_task_id": prepare_task_id,
        "force_rerender": force_rerender,
        "render_timeout_s": render_timeout.total_seconds(),
        "stop_on_kill": stop_on_kill,
        **task_kwargs,
    }
    found = RENDER_OPERATORS[backend]
    if isinstance(found, str):
        module, _, name = found.rpartition(".")
        found = getattr(importlib.import_module(module), name)
    operator: Any = found
    if backend == "lambda":
        return operator.partial(
            aws_conn_id=settings["conn_id"],
            region_name=settings["region_name"],
            verify=settings["verify"],
            botocore_config=settings["botocore_config"],
            deferrable=deferrable,
            poll_interval=poll_interval,
            progress_interval=progress_interval,
            renders_at_once=renders_per_task,
            **common,
        )
    # Local renders run on the worker: the task's own timeout covers a whole lane.
    return operator.partial(**common)
