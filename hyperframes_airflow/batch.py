"""`render_batch`: the whole batch flow as one TaskGroup a DAG author wires in with one call.

prepare_batch -> deploy_site -> render (mapped, one per row) -> collect_manifest
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import TaskGroup

from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.operators.deploy import HyperframesDeploySiteOperator
from hyperframes_airflow.operators.manifest import HyperframesCollectManifestOperator
from hyperframes_airflow.operators.prepare import HyperframesPrepareBatchOperator
from hyperframes_airflow.operators.render import HyperframesRenderOperator

DEFAULT_POOL = "hyperframes_renders"


def render_batch(
    *,
    project_dir: str,
    batch: str,
    config: RenderConfig | dict[str, Any],
    backend: str = "local",
    conn_id: str = "hyperframes_default",
    local_root: str | None = None,
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
    progress_interval: float = 60.0,
    rows_per_task: int | None = None,
    group_id: str = "render_batch",
) -> TaskGroup:
    """Build prepare -> deploy -> render (mapped) -> collect inside a TaskGroup and return it.

    String arguments are templated (e.g. `batch="s3://b/digests/{{ ds }}.jsonl"`, or
    `dry_run="{{ params.dry_run }}"`). `pool` should be created with `include_deferred` so its
    slots cap running renders across DAG runs; `max_concurrent` caps one batch even without it.
    `render_retries`/`render_retry_delay` set the render tasks' retries (a retry re-attaches
    to the row's execution instead of starting a second one; the delay defaults to Airflow's
    `[core] default_task_retry_delay`). Lambda renders are deferrable by default (the worker is
    freed while the render runs;
    `stop_on_kill` stops a render whose task is marked failed, cleared or whose run fails).
    """
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1; got {max_concurrent}")
    common: dict[str, Any] = {"backend": backend, "conn_id": conn_id, "local_root": local_root}
    with TaskGroup(group_id=group_id) as group:
        prepare = HyperframesPrepareBatchOperator(
            task_id="prepare_batch",
            project_dir=project_dir,
            batch=batch,
            config=config,
            strict=strict,
            strict_variables=strict_variables,
            dry_run=dry_run,
            max_cost_usd=max_cost_usd,
            confirm_cost=confirm_cost,
            rows_per_task=rows_per_task,
            retries=0,
            **common,
        )
        deploy = HyperframesDeploySiteOperator(
            task_id="deploy_site", project_dir=project_dir, dry_run=dry_run, **common
        )
        pool_kwargs: dict[str, Any] = {"pool": pool} if pool else {}
        retry_kwargs: dict[str, Any] = (
            {"retry_delay": render_retry_delay} if render_retry_delay is not None else {}
        )
        render = HyperframesRenderOperator.partial(
            task_id="render",
            force_rerender=force_rerender,
            render_timeout_s=render_timeout.total_seconds(),
            execution_timeout=render_timeout + timedelta(minutes=5),
            deferrable=deferrable,
            stop_on_kill=stop_on_kill,
            poll_interval=poll_interval,
            progress_interval=progress_interval,
            max_active_tis_per_dagrun=max_concurrent,
            map_index_template="{{ task.label }}",
            retries=render_retries,
            **pool_kwargs,
            **retry_kwargs,
            **common,
        ).expand_kwargs(prepare.output)
        collect = HyperframesCollectManifestOperator(
            task_id="collect_manifest",
            prepare_task_id=prepare.task_id,
            deploy_task_id=deploy.task_id,
            render_task_id=render.task_id,
            manifest_path=manifest_path,
            fail_on_row_failure=fail_on_row_failure,
            retries=0,
            **common,
        )
        prepare >> deploy >> render >> collect
        # A teardown, so that marking the DAG run failed (which skips pending tasks) still runs
        # it: the manifest is written on every path. It fails the run when a row failed.
        collect.as_teardown(on_failure_fail_dagrun=True)
    return group
