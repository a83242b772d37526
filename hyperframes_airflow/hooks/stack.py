"""`HyperframesStackHook`: one HyperFrames render stack behind one Airflow `aws` connection.

A thin layer over the Amazon provider's hooks, so credentials, regions, endpoints, `verify` and
botocore config come from an ordinary connection. Where the stack is (bucket, state machine,
memory) is parsed from the connection's extra by `contract.stack`; this module only makes the
calls. It is also the one place that stops an execution, in both forms: the worker's (boto3)
and the triggerer's (aiobotocore, through one shared client per event loop).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook
from airflow.providers.common.compat.sdk import AirflowNotFoundException
from botocore.exceptions import ClientError

from hyperframes_airflow.contract.site import build_tarball, site_key
from hyperframes_airflow.contract.stack import (
    DEFAULT_CONN_ID,
    StackSettings,
    StackSettingsError,
    settings_from_cloudformation,
    settings_from_extra,
)

__all__ = ["STOP_ERROR", "HyperframesStackHook", "SiteAccessDenied"]

#: The `error` recorded on executions this package stops (shows in the console and history).
STOP_ERROR = "AIRFLOW_TASK_STOPPED"
HISTORY_PAGE_SIZE = 1000
#: `getRenderProgress` reads at most 50 history pages.
MAX_HISTORY_PAGES = 50
_STOP_ERROR_MAX = 256
_STOP_CAUSE_MAX = 32768
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})


class SiteAccessDenied(PermissionError):
    """HeadObject on a site tarball was refused: the role cannot tell "missing" from "denied"."""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _strip_metadata(response: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _stop_kwargs(execution_arn: str, error: str | None, cause: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"executionArn": execution_arn}
    if error:
        kwargs["error"] = error[:_STOP_ERROR_MAX]
    if cause:
        kwargs["cause"] = cause[:_STOP_CAUSE_MAX]
    return kwargs


class HyperframesStackHook(AwsBaseHook):
    """Settings, site upload and Step Functions calls for one render stack.

    :param aws_conn_id: The `aws` connection; its extra says where the stack is.
    :param region_name: Overrides the connection's region (must match the state machine's).
    :param verify: Whether to verify SSL certificates (as for every AWS hook).
    :param config: botocore client configuration (as for every AWS hook).
    :param state_file_cwd: Where a relative `state_file` in the extra is looked up (default:
        the working directory, as the Node CLI does).
    """

    conn_name_attr = "aws_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "aws"
    hook_name = "HyperFrames render stack"

    def __init__(
        self,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        config: Any = None,
        *,
        state_file_cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            aws_conn_id=aws_conn_id, region_name=region_name, verify=verify, config=config
        )
        self._state_file_cwd = state_file_cwd
        self._settings: StackSettings | None = None

    # settings ---------------------------------------------------------------------------

    def get_stack_settings(self) -> StackSettings:
        """Where the stack is, from the connection's extra (resolved once per hook)."""
        if self._settings is None:
            conn_id = self.aws_conn_id or DEFAULT_CONN_ID
            try:
                conn = self.get_connection(conn_id)
            except AirflowNotFoundException as exc:
                raise StackSettingsError(
                    f"Connection {conn_id!r} is not defined; create an Amazon Web Services "
                    'connection with extra "bucket_name" and "state_machine_arn", or '
                    '"stack_name", or "state_file"'
                ) from exc
            extra = conn.extra_dejson
            self._settings = settings_from_extra(
                conn_id,
                extra,
                conn_region=self._region_name or extra.get("region_name") or None,
                describe_stack=self._describe_stack,
                cwd=self._state_file_cwd,
            )
            self.log.info("HyperFrames stack from %s", self._settings.source)
        return self._settings

    def _describe_stack(self, stack_name: str) -> StackSettings:
        cfn = CloudFormationHook(**self._sub_hook_params(self._region_name))
        label = f"CloudFormation stack {stack_name!r} (connection {self.aws_conn_id!r})"
        try:
            stacks = cfn.get_conn().describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                raise StackSettingsError(
                    f"{label} does not exist in region {cfn.conn_region_name}"
                ) from exc
            raise
        return settings_from_cloudformation(stack_name, stacks[0], label=label)

    def _sub_hook_params(self, region: str | None) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": region,
            "verify": self._verify,
            "config": self._config,
        }

    @cached_property
    def s3_hook(self) -> S3Hook:
        return S3Hook(**self._sub_hook_params(self.get_stack_settings().region))

    @cached_property
    def sfn_hook(self) -> StepFunctionHook:
        return StepFunctionHook(**self._sub_hook_params(self.get_stack_settings().region))

    def sfn_hook_in(self, region: str | None) -> StepFunctionHook:
        """A Step Functions hook for a known region (the triggerer knows it from prepare)."""
        return StepFunctionHook(**self._sub_hook_params(region))

    # S3 -------------------------------------------------------------------------------------

    def head(self, key: str) -> dict[str, Any] | None:
        """HeadObject in the stack bucket: the metadata, or None when the key is missing.

        A 403 is raised, not read as "missing": without `s3:ListBucket` S3 answers 403 for a
        missing key, and guessing would re-upload (or skip) sites on the wrong evidence.
        """
        bucket = self.get_stack_settings().bucket_name
        try:
            head = self.s3_hook.head_object(key, bucket_name=bucket)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES:
                return None
            if _http_status(exc) == 403 or code in _DENIED_CODES:
                raise SiteAccessDenied(
                    f"S3 HeadObject on s3://{bucket}/{key} was denied (403). The role needs "
                    f"s3:ListBucket on arn:aws:s3:::{bucket} (without it a missing key looks "
                    f"like 403, not 404) and s3:GetObject on arn:aws:s3:::{bucket}/*"
                ) from exc
            raise
        return None if head is None else _strip_metadata(head)

    def upload_site(self, project_dir: str | os.PathLike[str], site_id: str) -> int:
        """Tar the project and PutObject `sites/<siteId>/project.tar.gz`; the bytes uploaded."""
        bucket = self.get_stack_settings().bucket_name
        key = site_key(site_id)
        with tempfile.TemporaryDirectory(prefix="hf-deploy-site-") as tmp:
            tarball = Path(tmp) / "project.tar.gz"
            size = build_tarball(project_dir, tarball)
            with open(tarball, "rb") as body:
                self.s3_hook.get_conn().put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/gzip",
                    ContentLength=size,
                )
        self.log.info("Uploaded site %s (%d bytes) to s3://%s/%s", site_id, size, bucket, key)
        return size

    # Step Functions, from a worker ---------------------------------------------------------

    def describe_execution(self, execution_arn: str) -> dict[str, Any] | None:
        """DescribeExecution, or None when the execution does not exist."""
        try:
            response = self.sfn_hook.describe_execution(execution_arn)
        except ClientError as exc:
            if _error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise
        return _strip_metadata(response)

    def stop_execution(self, execution_arn: str, *, cause: str, error: str = STOP_ERROR) -> bool:
        """Stop a RUNNING execution; True if this call stopped it. Idempotent: a missing or
        already closed execution gives False."""
        described = self.describe_execution(execution_arn)
        if described is None or described.get("status") != "RUNNING":
            return False
        try:
            self.sfn_hook.conn.stop_execution(**_stop_kwargs(execution_arn, error, cause))
        except ClientError as exc:
            if _error_code(exc) in ("ExecutionDoesNotExist", "ExecutionNotRunning"):
                return False
            after = self.describe_execution(execution_arn)
            if after is None or after.get("status") != "RUNNING":
                return False  # it closed (or vanished) between the two calls
            raise
        return True

    def executions_since(self, state_machine_arn: str, since: datetime) -> Iterator[dict[str, Any]]:
        """The state machine's executions of every status started at or after `since`,
        newest first (ListExecutions' order), 1,000 a page; stops at the first older one."""
        kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": 1000}
        while True:
            page = self.sfn_hook.conn.list_executions(**kwargs)
            for execution in page.get("executions", []):
                if execution["startDate"] < since:
                    return
                yield execution
            token = page.get("nextToken")
            if not token:
                return
            kwargs["nextToken"] = token

    def get_execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The events in forward order, up to 50 pages (the SDK's limit); [] when missing."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "executionArn": execution_arn,
            "maxResults": HISTORY_PAGE_SIZE,
            "reverseOrder": False,
        }
        for _ in range(MAX_HISTORY_PAGES):
            try:
                page = self.sfn_hook.conn.get_execution_history(**kwargs)
            except ClientError as exc:
                if _error_code(exc) == "ExecutionDoesNotExist":
                    return []
                raise
            events.extend(page.get("events", []))
            token = page.get("nextToken")
            if not token:
                break
            kwargs["nextToken"] = token
        return events

    # Step Functions, from the triggerer ----------------------------------------------------

    @asynccontextmanager
    async def async_sfn(self, region: str | None) -> AsyncIterator[Any]:
        """The loop's shared aiobotocore Step Functions client for this connection + region.

        Creating a client costs seconds on a cold triggerer; sharing one keeps a stop on kill
        fast and lets every waiting render's sweep reuse one connection pool.
        """
        key = (self.aws_conn_id, region, repr(self._verify), repr(self._config))
        shared = _shared_clients(key, lambda: self.sfn_hook_in(region).get_async_conn())
        client = await shared.acquire()
        try:
            yield client
        finally:
            await shared.release()

    async def async_start_execution(
        self, name: str, input_json: str, *, state_machine_arn: str, region: str | None
    ) -> str | None:
        """StartExecution from the triggerer: the ARN, or None when the name is taken.

        Step Functions answers a repeated start of a RUNNING execution with the same input
        with that execution's ARN, so a re-created trigger re-attaches for free.
        """
        async with self.async_sfn(region) as client:
            try:
                response = await client.start_execution(
                    stateMachineArn=state_machine_arn, name=name, input=input_json
                )
            except ClientError as exc:
                if _error_code(exc) == "ExecutionAlreadyExists":
                    return None
                raise
        return str(response["executionArn"])

    async def async_describe_execution(
        self, execution_arn: str, *, region: str | None
    ) -> dict[str, Any] | None:
        """DescribeExecution from the triggerer, or None when the execution does not exist."""
        async with self.async_sfn(region) as client:
            try:
                response = await client.describe_execution(executionArn=execution_arn)
            except ClientError as exc:
                if _error_code(exc) == "ExecutionDoesNotExist":
                    return None
                raise
        return _strip_metadata(response)

    async def async_running_executions(
        self, state_machine_arn: str, *, region: str | None
    ) -> set[str]:
        """ARNs of the state machine's RUNNING executions (every page)."""
        running: set[str] = set()
        kwargs: dict[str, Any] = {
            "stateMachineArn": state_machine_arn,
            "statusFilter": "RUNNING",
            "maxResults": 1000,
        }
        async with self.async_sfn(region) as client:
            while True:
                page = await client.list_executions(**kwargs)
                running.update(e["executionArn"] for e in page.get("executions", []))
                token = page.get("nextToken")
                if not token:
                    return running
                kwargs["nextToken"] = token

    async def async_stop_execution(
        self, execution_arn: str, *, region: str | None, cause: str, error: str = STOP_ERROR
    ) -> bool:
        """`stop_execution` from the triggerer; True if this call stopped it."""
        async with self.async_sfn(region) as client:
            described = await self.async_describe_execution(execution_arn, region=region)
            if described is None or described.get("status") != "RUNNING":
                return False
            try:
                await client.stop_execution(**_stop_kwargs(execution_arn, error, cause))
            except ClientError as exc:
                if _error_code(exc) in ("ExecutionDoesNotExist", "ExecutionNotRunning"):
                    return False
                described = await client.describe_execution(executionArn=execution_arn)
                if described.get("status") != "RUNNING":
                    return False
                raise
        return True

    async def async_history(
        self, execution_arn: str, *, region: str | None
    ) -> list[dict[str, Any]]:
        """`get_execution_history` from the triggerer ([] when the execution is missing)."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": HISTORY_PAGE_SIZE}
        async with self.async_sfn(region) as client:
            for _ in range(MAX_HISTORY_PAGES):
                try:
                    page = await client.get_execution_history(**kwargs)
                except ClientError as exc:
                    if _error_code(exc) == "ExecutionDoesNotExist":
                        return []
                    raise
                events.extend(page.get("events", []))
                token = page.get("nextToken")
                if not token:
                    break
                kwargs["nextToken"] = token
        return events


class _SharedClient:
    """One entered async client, shared by reference count and closed with the last user."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._refs = 0
        self._context: Any = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> Any:
        async with self._lock:
            if self._refs == 0:
                self._context = await self._factory()
                self._client = await self._context.__aenter__()
            self._refs += 1
            return self._client

    async def release(self) -> None:
        async with self._lock:
            self._refs -= 1
            if self._refs == 0 and self._context is not None:
                context, self._context, self._client = self._context, None, None
                await context.__aexit__(None, None, None)


_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], _SharedClient]
] = weakref.WeakKeyDictionary()


def _shared_clients(key: tuple[Any, ...], factory: Any) -> _SharedClient:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    shared = per_loop.get(key)
    if shared is None:
        shared = per_loop[key] = _SharedClient(factory)
    return shared
