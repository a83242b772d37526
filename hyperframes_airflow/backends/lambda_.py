"""The Lambda backend: renders run as Step Functions executions of a HyperFrames stack.

Sites go to `s3://<bucket>/sites/<siteId>/project.tar.gz` once per content hash. The renders
themselves are started and watched by the render trigger (`triggers/lane.py`); this module is
what the shared operators need: the stack's facts (once, in prepare), the site upload, and the
manifest's look at rows whose task ended without results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from hyperframes_airflow.backends.base import Resolved, SiteHandle, manifest_name
from hyperframes_airflow.contract.batch import BatchRow
from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.deployed_site import read_composition_from_tarball
from hyperframes_airflow.contract.execution import attempt_name, execution_arn, split_attempt
from hyperframes_airflow.contract.lifecycle import MAX_ATTEMPTS, result_row, should_stop
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.plan import row_base_name, row_digest
from hyperframes_airflow.contract.rows import BatchSpec, LambdaStack, RenderAttempt, RowRef
from hyperframes_airflow.contract.site import site_key
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID
from hyperframes_airflow.hooks.stack import HyperframesStackHook
from hyperframes_airflow.storage import RowChanged, read_planned_rows

__all__ = ["LambdaBackend"]

log = logging.getLogger(__name__)

#: Up to this many rows named by this package are settled by DescribeExecution per name;
#: more are matched against one listing of the run's executions.
DESCRIBE_UP_TO = 20


class LambdaBackend:
    """A HyperFrames Step Functions + Lambda stack found through an Airflow `aws` connection.

    :param aws_conn_id: The connection whose extra says where the stack is.
    :param region_name: Region override; must match the state machine's region.
    :param verify: SSL verification, as for every AWS hook.
    :param botocore_config: botocore client configuration, as for every AWS hook.
    """

    kind = "lambda"
    bills_renders = True

    def __init__(
        self,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    @cached_property
    def hook(self) -> HyperframesStackHook:
        return HyperframesStackHook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        )

    @property
    def bucket(self) -> str:
        return self.hook.get_stack_settings().bucket_name

    @property
    def root_uri(self) -> str:
        return f"s3://{self.bucket}/"

    def resolve(self, *, site_id: str, config: RenderConfig) -> Resolved:
        """The stack's bucket, state machine, region and memory, resolved once for the batch.

        Like `hyperframes lambda render-batch`, each render's chunk wave is sized to the
        stack's reserved concurrency (`workerConcurrency`) unless the config chose a value.
        """
        settings = self.hook.get_stack_settings()
        if config.worker_concurrency is None and settings.reserved_concurrency:
            config = RenderConfig.model_validate(
                {
                    **config.model_dump(exclude_none=True),
                    "worker_concurrency": settings.reserved_concurrency,
                }
            )
        return Resolved(
            digest_bucket=settings.bucket_name,
            project_uri=f"s3://{settings.bucket_name}/{site_key(site_id)}",
            config=config,
            stack=LambdaStack(
                bucket_name=settings.bucket_name,
                state_machine_arn=settings.state_machine_arn,
                region=settings.region,
                lambda_memory_mb=settings.lambda_memory_mb,
            ),
            source_conn_id=self.aws_conn_id,
        )

    def find_site(self, site_id: str) -> SiteHandle | None:
        head = self.hook.head(site_key(site_id))
        if head is None:
            return None
        uri = f"s3://{self.bucket}/{site_key(site_id)}"
        return SiteHandle(site_id, uri, uploaded=False, bytes=int(head.get("ContentLength") or 0))

    def site_key(self, site_id: str) -> str:
        return f"s3://{self.bucket}/{site_key(site_id)}"

    def site_composition(self, site_id: str) -> Composition:
        """Stream the site tarball from S3 and parse its entry file (nothing else is read)."""
        obj = self.hook.s3_hook.get_conn().get_object(Bucket=self.bucket, Key=site_key(site_id))
        body = obj["Body"]
        try:
            return read_composition_from_tarball(body)
        finally:
            body.close()

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Upload the site tarball unless the key already exists (HeadObject short-circuit)."""
        found = self.find_site(site_id)
        if found is not None:
            return found
        size = self.hook.upload_site(project_dir, site_id)
        uri = f"s3://{self.bucket}/{site_key(site_id)}"
        return SiteHandle(site_id, uri, uploaded=True, bytes=size)

    def default_manifest_uri(self, dag_id: str, run_id: str, group_id: str) -> str:
        return f"s3://{self.bucket}/manifests/{manifest_name(dag_id, run_id, group_id)}"

    def settle(
        self,
        spec: BatchSpec,
        pending: Sequence[tuple[RowRef, str | None]],
        *,
        dag_id: str,
        run_id: str,
        since: datetime | None = None,
    ) -> dict[int, ManifestRow]:
        """Find each row's latest execution by its deterministic names; stop it if it still
        runs for a task that no longer does; its history is the row's result.

        Many rows are matched against one listing of the executions started since `since`
        (the run's start): about 1,000 rows a ListExecutions page, where a DescribeExecution
        per name would cost 100,000 calls for a 100,000-row batch. A row named by the batch
        itself (`executionName`) may have run before this run, so it is always described.
        """
        if spec.stack is None or not pending:
            return {}
        stack = spec.stack
        wire = RenderConfig.model_validate(spec.config).to_wire()
        refs = [ref for ref, _ in pending]
        task_states = {ref.line: state for ref, state in pending}
        generated: dict[str, tuple[RowRef, BatchRow]] = {}
        described: list[tuple[str, RowRef, BatchRow]] = []
        for ref, row in zip(refs, read_planned_rows(spec, refs, wire), strict=True):
            if isinstance(row, RowChanged):
                continue
            digest = row_digest(
                base_wire=wire, bucket=stack.bucket_name, site_id=spec.site_id, row=row
            )
            base = row_base_name(row, dag_id=dag_id, run_id=run_id, digest=digest)
            if row.execution_name:
                described.append((base, ref, row))
            else:
                generated[base] = (ref, row)
        latest: dict[int, tuple[RenderAttempt, str, BatchRow]] = {}
        if since is not None and len(generated) > DESCRIBE_UP_TO:
            latest.update(self._latest_listed(stack.state_machine_arn, generated, since))
        else:
            described += [(base, ref, row) for base, (ref, row) in generated.items()]
        for base, ref, row in described:
            found_latest = self._latest_described(stack.state_machine_arn, base)
            if found_latest is not None:
                attempt, execution = found_latest
                latest[ref.line] = (
                    _attempt(ref, attempt, execution),
                    str(execution.get("status")),
                    row,
                )
        settled: dict[int, ManifestRow] = {}
        for line, (render, status, row) in latest.items():
            arn = render.execution_arn or ""
            task_state = task_states[line]
            if should_stop(task_state, status):
                self.hook.stop_execution(
                    arn, cause=f"Stopped by Airflow: its task is {task_state}."
                )
                self._wait_closed(arn)
            try:
                settled[line] = result_row(
                    render,
                    self.hook.get_execution_history(arn),
                    memory_mb=stack.lambda_memory_mb,
                    variables=row.variables,
                )
            except ValueError:  # still running (a task that may yet finish it): no result
                continue
        return settled

    def _latest_listed(
        self,
        state_machine_arn: str,
        generated: dict[str, tuple[RowRef, BatchRow]],
        since: datetime,
    ) -> dict[int, tuple[RenderAttempt, str, BatchRow]]:
        """Each row's highest attempt among the executions started since `since` (by line)."""
        latest: dict[int, tuple[RenderAttempt, str, BatchRow]] = {}
        for execution in self.hook.executions_since(state_machine_arn, since):
            found = split_attempt(str(execution["name"]), generated)
            if found is None:
                continue
            base, attempt = found
            ref, row = generated[base]
            if ref.line not in latest or latest[ref.line][0].attempt < attempt:
                latest[ref.line] = (
                    _attempt(ref, attempt, execution),
                    str(execution["status"]),
                    row,
                )
        return latest

    def _latest_described(
        self, state_machine_arn: str, base: str
    ) -> tuple[int, dict[str, Any]] | None:
        """The highest attempt of `base` that exists, by DescribeExecution of each name."""
        latest: tuple[int, dict[str, Any]] | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            arn = execution_arn(state_machine_arn, attempt_name(base, attempt))
            found = self.hook.describe_execution(arn)
            if found is None:
                break
            latest = (attempt, {**found, "executionArn": found.get("executionArn") or arn})
        return latest

    def _wait_closed(self, arn: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = self.hook.describe_execution(arn)
            if described is None or described.get("status") != "RUNNING":
                return
            time.sleep(0.5)


def _attempt(ref: RowRef, attempt: int, execution: dict[str, Any]) -> RenderAttempt:
    return RenderAttempt(
        line=ref.line,
        output_key=ref.output_key,
        execution_name=str(execution["name"]),
        execution_arn=str(execution["executionArn"]),
        attempt=attempt,
    )
