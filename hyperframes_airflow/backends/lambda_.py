"""The Lambda backend: renders run as Step Functions executions of a HyperFrames stack.

Sites go to `s3://<bucket>/sites/<siteId>/project.tar.gz` once per content hash; each row is
one execution whose input is byte-for-byte what the Node SDK sends. `ensure_started` makes a
row's render exactly-once across task retries: it walks the row's deterministic attempt names
and re-attaches to a running execution, returns an earlier success, or starts the next attempt
after a failure, instead of ever starting a duplicate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from hyperframes_airflow.backends.base import RenderJob, SiteHandle, safe_path_segment
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.execution import (
    attempt_name,
    build_execution_input,
    check_input_size,
    encode_execution_input,
    execution_arn,
)
from hyperframes_airflow.contract.manifest import SFN_STATUS_TO_ROW, ManifestRow
from hyperframes_airflow.contract.progress import error_summary, render_progress
from hyperframes_airflow.contract.site import site_key
from hyperframes_airflow.hooks.hyperframes import (
    DEFAULT_CONN_ID,
    HyperframesStackHook,
    StackSettings,
)

__all__ = [
    "MAX_ATTEMPTS",
    "STOP_ERROR",
    "LambdaBackend",
    "StartOutcome",
    "build_result_row",
    "execution_result_row",
]

log = logging.getLogger(__name__)

#: Attempt names are walked up to this many; beyond it something is badly wrong.
MAX_ATTEMPTS = 100
#: The `error` recorded on executions this package stops (shows in the console and history).
STOP_ERROR = "AIRFLOW_TASK_STOPPED"


@dataclass(frozen=True)
class StartOutcome:
    """What `ensure_started` did for a row: which execution is now the row's render, and how.

    Exactly one of `started`, `reattached`, `already_succeeded` is True. `describe` is the
    DescribeExecution of that execution when one was read (None right after a fresh start).
    `passed_over` lists `(name, status)` of earlier attempts that could not be reused.
    """

    execution_name: str
    execution_arn: str
    attempt: int
    started: bool = False
    reattached: bool = False
    already_succeeded: bool = False
    describe: Mapping[str, Any] | None = None
    passed_over: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (no describe, which holds datetimes): fit for XCom and logs."""
        return {
            "executionName": self.execution_name,
            "executionArn": self.execution_arn,
            "attempt": self.attempt,
            "started": self.started,
            "reattached": self.reattached,
            "alreadySucceeded": self.already_succeeded,
            "passedOver": [list(p) for p in self.passed_over],
        }


def _same_input(stored: Any, ours: str) -> bool:
    """Byte-equal, or equal as JSON (a service may reformat); an unknown input never matches."""
    if not isinstance(stored, str):
        return False
    if stored == ours:
        return True
    try:
        return bool(json.loads(stored) == json.loads(ours))
    except ValueError:
        return False


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _output_block(describe: Mapping[str, Any]) -> dict[str, Any]:
    """`output.Output` of a SUCCEEDED execution ({OutputS3Uri, FramesEncoded, FileSize})."""
    raw = describe.get("output")
    try:
        doc = json.loads(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        doc = None
    out = doc.get("Output") if isinstance(doc, dict) else None
    return out if isinstance(out, dict) else {}


def build_result_row(
    *,
    input_line: int,
    output_key: str,
    execution_name: str,
    execution_arn: str,
    attempt: int,
    describe: Mapping[str, Any],
    history: Iterable[Mapping[str, Any]],
    memory_mb: int,
) -> dict[str, Any]:
    """The manifest row of a closed execution, from DescribeExecution + its history.

    Pure (no AWS calls, primitives in), so a trigger can build the row where it sees the end.
    Output facts come from `output.Output`, falling back to the history's AssembleV2 exit; cost
    is `getRenderProgress`'s accrued cost; error/cause prefer the execution-level failure.
    """
    sfn_status = str(describe.get("status") or "RUNNING")
    status = SFN_STATUS_TO_ROW.get(sfn_status)
    if status is None:
        raise ValueError(f"execution {execution_arn} has not finished (status {sfn_status})")
    events = list(history)
    if not events and describe.get("error") is not None:
        # No history at hand: DescribeExecution's error/cause tell the same story.
        events = [
            {
                "type": "ExecutionFailed",
                "executionFailedEventDetails": {
                    "error": describe.get("error"),
                    "cause": describe.get("cause"),
                },
            }
        ]
    progress = render_progress(describe, events, memory_mb=memory_mb)
    row: dict[str, Any] = {
        "inputLine": input_line,
        "outputKey": output_key,
        "status": status,
        "executionName": execution_name,
        "executionArn": execution_arn,
        "costUsd": progress.costs.accrued_so_far_usd,
        "startedAt": progress.started_at,
        "endedAt": progress.ended_at,
        "attempt": attempt,
    }
    if status == "succeeded":
        out = _output_block(describe)
        fallback = progress.output_file
        uri = out.get("OutputS3Uri") or (fallback.s3_uri if fallback else None)
        size = _number(out.get("FileSize"))
        if size is None and fallback is not None:
            size = _number(fallback.bytes)
        frames = _number(out.get("FramesEncoded"))
        if frames is None and progress.frames_rendered:
            frames = _number(progress.frames_rendered)
        row.update(outputUri=uri, bytes=size, frames=frames)
    else:
        error, cause = error_summary(progress)
        row.update(error=error or sfn_status, cause=cause)
    return ManifestRow.model_validate(row).model_dump(by_alias=True)


def execution_result_row(
    execution: Mapping[str, Any],
    describe: Mapping[str, Any],
    history: Iterable[Mapping[str, Any]],
    *,
    memory_mb: int,
) -> dict[str, Any]:
    """`build_result_row` from the operator's execution record (primitives, as in XCom):
    `{"line", "outputKey", "executionName", "executionArn", "attempt"}`."""
    return build_result_row(
        input_line=int(execution["line"]),
        output_key=str(execution["outputKey"]),
        execution_name=str(execution["executionName"]),
        execution_arn=str(execution["executionArn"]),
        attempt=int(execution.get("attempt") or 1),
        describe=describe,
        history=history,
        memory_mb=memory_mb,
    )


class LambdaBackend:
    """Renders on a HyperFrames Step Functions + Lambda stack found through an Airflow connection.

    Holds only the connection id; the hook and the stack settings are resolved lazily, once.
    """

    kind = "lambda"

    def __init__(
        self,
        conn_id: str = DEFAULT_CONN_ID,
        *,
        region_name: str | None = None,
        hook: HyperframesStackHook | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.region_name = region_name
        self._hook = hook

    # stack ---------------------------------------------------------------------------------

    @property
    def hook(self) -> HyperframesStackHook:
        if self._hook is None:
            self._hook = HyperframesStackHook(self.conn_id, region_name=self.region_name)
        return self._hook

    @property
    def settings(self) -> StackSettings:
        return self.hook.get_stack_settings()

    @property
    def bucket_name(self) -> str:
        return self.settings.bucket_name

    @property
    def state_machine_arn(self) -> str:
        return self.settings.state_machine_arn

    @property
    def region(self) -> str | None:
        return self.settings.region

    @property
    def lambda_memory_mb(self) -> int:
        return self.settings.lambda_memory_mb

    @property
    def reserved_concurrency(self) -> int | None:
        return self.settings.reserved_concurrency

    # RenderBackend -------------------------------------------------------------------------

    def output_uri(self, output_key: str) -> str:
        return f"s3://{self.bucket_name}/{output_key}"

    def default_manifest_uri(self, dag_id: str, run_id: str) -> str:
        name = f"{safe_path_segment(run_id)}.json"
        return f"s3://{self.bucket_name}/manifests/{safe_path_segment(dag_id)}/{name}"

    def project_uri(self, site_id: str) -> str:
        return f"s3://{self.bucket_name}/{site_key(site_id)}"

    def deploy_site(self, project_dir: Path, site_id: str) -> SiteHandle:
        """Upload the site tarball unless the key already exists (HeadObject short-circuit)."""
        head = self.hook.site_exists(site_key(site_id))
        if head is not None:
            return SiteHandle(
                site_id=site_id,
                project_uri=self.project_uri(site_id),
                uploaded=False,
                bytes=int(head.get("ContentLength") or 0),
            )
        return self.hook.upload_site(project_dir, site_id)

    # executions ----------------------------------------------------------------------------

    def execution_arn(self, execution_name: str) -> str:
        return execution_arn(self.state_machine_arn, execution_name)

    def execution_input(self, job: RenderJob, execution_name: str | None = None) -> str:
        """The exact compact StartExecution input for `job` under `execution_name`.

        The name is part of the input (`PlanOutputS3Prefix`), so each attempt has its own. The
        Config is re-serialised in the CLI's key order (a JSONB XCom may have reordered it),
        with the row's variables last and omitted when the row has none, as the CLI does.
        """
        name = execution_name or job.execution_name
        config = RenderConfig.model_validate(dict(job.config))
        wire = config.to_wire(variables=dict(job.variables) if job.variables else None)
        doc = build_execution_input(
            project_s3_uri=self.project_uri(job.site_id),
            bucket=self.bucket_name,
            execution_name=name,
            output_key=job.output_key,
            config=wire,
        )
        encoded = encode_execution_input(doc)
        check_input_size(encoded)
        return encoded

    def ensure_started(self, job: RenderJob, *, force_rerender: bool = False) -> StartOutcome:
        """Make sure exactly one execution renders this row, and say which one.

        For attempt names 1, 2, ...: a missing name is started; a RUNNING execution with our
        input is re-attached; a SUCCEEDED one with our input is returned as already done unless
        `force_rerender`; anything else (failed, timed out, aborted, another input) moves on to
        the next name. A concurrent start of the same name is resolved by describing again.
        """
        passed_over: list[tuple[str, str]] = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            name = attempt_name(job.execution_name, attempt)
            arn = self.execution_arn(name)
            input_json = self.execution_input(job, name)
            describe = self.hook.describe_execution(arn)
            if describe is None:
                try:
                    started_arn = self.hook.start_execution(name, input_json)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                        raise
                    describe = self.hook.describe_execution(arn)  # lost a race: look again
                    if describe is None:
                        raise
                else:
                    return StartOutcome(
                        execution_name=name,
                        execution_arn=started_arn or arn,
                        attempt=attempt,
                        started=True,
                        passed_over=tuple(passed_over),
                    )
            status = str(describe.get("status"))
            if not _same_input(describe.get("input"), input_json):
                log.warning(
                    "Execution %s exists with a different input (%s); trying the next name",
                    name,
                    status,
                )
                passed_over.append((name, f"{status} (different input)"))
                continue
            if status == "RUNNING":
                return StartOutcome(
                    execution_name=name,
                    execution_arn=arn,
                    attempt=attempt,
                    reattached=True,
                    describe=describe,
                    passed_over=tuple(passed_over),
                )
            if status == "SUCCEEDED" and not force_rerender:
                return StartOutcome(
                    execution_name=name,
                    execution_arn=arn,
                    attempt=attempt,
                    already_succeeded=True,
                    describe=describe,
                    passed_over=tuple(passed_over),
                )
            passed_over.append((name, status))
        raise RuntimeError(
            f"Row {job.input_line} ({job.output_key}): no free execution name after "
            f"{MAX_ATTEMPTS} attempts of {job.execution_name!r}"
        )

    def describe(self, execution_arn: str) -> dict[str, Any] | None:
        return self.hook.describe_execution(execution_arn)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return self.hook.get_execution_history(execution_arn)

    def status(self, execution_arn: str) -> str | None:
        """The execution's status (`RUNNING`, `SUCCEEDED`, ...), or None when it does not exist."""
        describe = self.hook.describe_execution(execution_arn)
        return None if describe is None else str(describe.get("status"))

    def stop(self, execution_arn: str, cause: str = "stopped by Airflow") -> bool:
        """StopExecution, idempotent: False when it was already closed or does not exist."""
        return self.hook.stop_execution(execution_arn, error=STOP_ERROR, cause=cause)

    def wait_until_closed(
        self,
        execution_arn: str,
        *,
        poll_interval_s: float = 5.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll DescribeExecution until the execution leaves RUNNING; its last description.

        For the non-deferrable path and tests; raises TimeoutError (without stopping it).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            describe = self.hook.describe_execution(execution_arn)
            if describe is None:
                raise LookupError(f"execution {execution_arn} does not exist")
            if describe.get("status") != "RUNNING":
                return describe
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout_s}s")
            time.sleep(poll_interval_s)

    # manifest rows ---------------------------------------------------------------------------

    def result_row(
        self,
        job: RenderJob,
        execution_name: str,
        execution_arn: str,
        attempt: int,
        describe: Mapping[str, Any],
        history: Iterable[Mapping[str, Any]],
    ) -> dict[str, Any]:
        """The manifest row of a finished execution (see `build_result_row`)."""
        return build_result_row(
            input_line=job.input_line,
            output_key=job.output_key,
            execution_name=execution_name,
            execution_arn=execution_arn,
            attempt=attempt,
            describe=describe,
            history=history,
            memory_mb=self.lambda_memory_mb,
        )

    def collect_result(self, job: RenderJob, outcome: StartOutcome) -> dict[str, Any]:
        """Describe + history + `result_row` for a closed execution (e.g. already succeeded)."""
        describe = self.hook.describe_execution(outcome.execution_arn)
        if describe is None:
            raise LookupError(f"execution {outcome.execution_arn} does not exist")
        history = self.hook.get_execution_history(outcome.execution_arn)
        return self.result_row(
            job, outcome.execution_name, outcome.execution_arn, outcome.attempt, describe, history
        )

    def completed_row(self, execution: Mapping[str, Any]) -> dict[str, Any]:
        """Describe + history + the manifest row, for an execution record (see
        `execution_result_row`); the execution must have closed."""
        arn = str(execution["executionArn"])
        describe = self.hook.describe_execution(arn)
        if describe is None:
            raise LookupError(f"execution {arn} does not exist")
        history = self.hook.get_execution_history(arn)
        return execution_result_row(execution, describe, history, memory_mb=self.lambda_memory_mb)

    @staticmethod
    def failed_to_start_row(
        job: RenderJob, error: str, cause: str | None = None, *, execution_name: str | None = None
    ) -> dict[str, Any]:
        """The manifest row of a row whose execution could not be started."""
        return ManifestRow.model_validate(
            {
                "inputLine": job.input_line,
                "outputKey": job.output_key,
                "status": "failed-to-start",
                "executionName": execution_name or job.execution_name,
                "error": error,
                "cause": cause,
            }
        ).model_dump(by_alias=True)
