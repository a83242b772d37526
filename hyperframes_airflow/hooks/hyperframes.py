"""Hooks for a HyperFrames render stack: where it is, and the S3/Step Functions calls it needs.

Thin layers over the Amazon provider's hooks, so credentials, regions, endpoints and retries come
from an ordinary Airflow `aws` connection. The connection's extra says where the stack is, in
one of three ways (contract §1):

- `bucket_name` + `state_machine_arn` (optional `lambda_memory_mb`, `reserved_concurrency`);
- `stack_name`: the CloudFormation outputs `RenderBucketName` / `RenderStateMachineArn` (and the
  stack parameters `LambdaMemoryMb` / `ReservedConcurrency` when present);
- `state_file`: the `.hyperframes/lambda-stack-<name>.json` written by `hyperframes lambda deploy`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook
from airflow.providers.common.compat.sdk import AirflowNotFoundException
from botocore.exceptions import ClientError

from hyperframes_airflow.backends.base import SiteHandle
from hyperframes_airflow.contract.progress import DEFAULT_MEMORY_MB
from hyperframes_airflow.contract.site import build_tarball, site_key

__all__ = [
    "DEFAULT_CONN_ID",
    "DEFAULT_STACK_NAME",
    "HyperframesStackHook",
    "SiteAccessDenied",
    "StackSettings",
    "StackSettingsError",
    "read_cli_state_file",
    "settings_from_extra",
]

DEFAULT_CONN_ID = "hyperframes_default"
#: The CLI's `DEFAULT_STACK_NAME`.
DEFAULT_STACK_NAME = "hyperframes-default"
BUCKET_OUTPUT = "RenderBucketName"
#: SAM names it `RenderStateMachineArn`; the CDK docs' example uses `StateMachineArn`.
STATE_MACHINE_OUTPUTS: tuple[str, ...] = ("RenderStateMachineArn", "StateMachineArn")
HISTORY_PAGE_SIZE = 1000
#: `getRenderProgress` reads at most 50 history pages.
MAX_HISTORY_PAGES = 50
_STOP_ERROR_MAX = 256
_STOP_CAUSE_MAX = 32768

_STATE_MACHINE_ARN_RE = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):states:(?P<region>[a-z0-9-]+):(?P<account>\d{12})"
    r":stateMachine:(?P<name>[^:\s]+)"
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})


class StackSettingsError(ValueError):
    """The connection (or state file, or CloudFormation stack) does not say where the stack is."""


class SiteAccessDenied(PermissionError):
    """HeadObject on a site tarball was refused: the role cannot tell "missing" from "denied"."""


@dataclass(frozen=True, kw_only=True)
class StackSettings:
    """Where a render stack lives and how it is sized; `source` says where this came from."""

    bucket_name: str
    state_machine_arn: str
    region: str | None = None
    lambda_memory_mb: int = DEFAULT_MEMORY_MB
    reserved_concurrency: int | None = None
    stack_name: str | None = None
    source: str = "explicit"


# -- settings ------------------------------------------------------------------------------


def _as_int(value: Any, *, what: str, minimum: int, maximum: int | None = None) -> int:
    """Extras typed in the UI are often strings: accept `"3008"`, reject anything fuzzy."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        number = int(value.strip())
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bound = f" in [{minimum}, {maximum}]" if maximum is not None else f" >= {minimum}"
        raise StackSettingsError(f"{what} must be an integer{bound}; got {value!r}")
    return number


def _memory(value: Any, what: str) -> int:
    return _as_int(value, what=what, minimum=128, maximum=10240)


def _reserved(value: Any, what: str) -> int | None:
    """`-1` is the template's "unreserved"; keep None for it."""
    number = _as_int(value, what=what, minimum=-1)
    return None if number < 0 else number


def _present(extra: Mapping[str, Any], key: str) -> bool:
    value = extra.get(key)
    return value is not None and value != ""


def _checked(settings: StackSettings, label: str, region: str | None) -> StackSettings:
    """Validate the bucket and ARN, and settle the region (the ARN's region is the truth)."""
    bucket = settings.bucket_name
    if not isinstance(bucket, str) or not bucket or "/" in bucket or bucket.startswith("s3:"):
        raise StackSettingsError(
            f"{label}: the bucket must be a bare bucket name (no s3://, no path); got {bucket!r}"
        )
    match = _STATE_MACHINE_ARN_RE.fullmatch(str(settings.state_machine_arn))
    if match is None:
        raise StackSettingsError(
            f"{label}: the state machine ARN must look like "
            "arn:aws:states:<region>:<account>:stateMachine:<name>; "
            f"got {settings.state_machine_arn!r}"
        )
    arn_region = match["region"]
    effective = region or settings.region or arn_region
    if effective != arn_region:
        raise StackSettingsError(
            f"{label}: the state machine {settings.state_machine_arn} is in region {arn_region}, "
            f"but the connection uses region {effective}; set region_name to {arn_region}"
        )
    return StackSettings(
        bucket_name=bucket,
        state_machine_arn=settings.state_machine_arn,
        region=effective,
        lambda_memory_mb=settings.lambda_memory_mb,
        reserved_concurrency=settings.reserved_concurrency,
        stack_name=settings.stack_name,
        source=settings.source,
    )


def settings_from_extra(
    conn_id: str,
    extra: Mapping[str, Any],
    *,
    conn_region: str | None,
    describe_stack: Callable[[str], StackSettings],
    cwd: str | os.PathLike[str] | None = None,
) -> StackSettings:
    """Resolve a connection's extra into settings; exactly one stack source must be given.

    `describe_stack` resolves a CloudFormation stack name (the hook passes its CloudFormation
    lookup), which keeps this function free of AWS calls for the other two sources.
    """
    label = f"Connection {conn_id!r}"
    direct = [k for k in ("bucket_name", "state_machine_arn") if _present(extra, k)]
    sources = [
        name
        for name, given in (
            ('"bucket_name"/"state_machine_arn"', bool(direct)),
            ('"stack_name"', _present(extra, "stack_name")),
            ('"state_file"', _present(extra, "state_file")),
        )
        if given
    ]
    if not sources:
        raise StackSettingsError(
            f'{label} must set extra "bucket_name" and "state_machine_arn", or "stack_name" '
            '(CloudFormation), or "state_file" (the .hyperframes/lambda-stack-<name>.json '
            "written by `hyperframes lambda deploy`)"
        )
    if len(sources) > 1:
        raise StackSettingsError(
            f"{label} sets {' and '.join(sources)}: these are alternative ways to find the "
            "stack; keep exactly one"
        )
    if direct:
        if len(direct) == 1:
            missing = "state_machine_arn" if direct == ["bucket_name"] else "bucket_name"
            raise StackSettingsError(
                f'{label} sets extra "{direct[0]}" but not "{missing}"; set both '
                '(or use "stack_name" or "state_file" instead)'
            )
        base = StackSettings(
            bucket_name=str(extra["bucket_name"]).strip(),
            state_machine_arn=str(extra["state_machine_arn"]).strip(),
            source=f"connection {conn_id!r} extra",
        )
    elif _present(extra, "stack_name"):
        base = describe_stack(str(extra["stack_name"]).strip())
    else:
        base = read_cli_state_file(str(extra["state_file"]), cwd=cwd)
        base = _with(base, source=f"{base.source} (connection {conn_id!r})")
    if _present(extra, "lambda_memory_mb"):
        what = f'{label}: extra "lambda_memory_mb"'
        base = _with(base, lambda_memory_mb=_memory(extra["lambda_memory_mb"], what))
    if _present(extra, "reserved_concurrency"):
        what = f'{label}: extra "reserved_concurrency"'
        base = _with(base, reserved_concurrency=_reserved(extra["reserved_concurrency"], what))
    return _checked(base, label, conn_region)


def _with(settings: StackSettings, **changes: Any) -> StackSettings:
    return replace(settings, **changes)


def read_cli_state_file(
    path_or_stack_name: str | os.PathLike[str] = DEFAULT_STACK_NAME,
    cwd: str | os.PathLike[str] | None = None,
) -> StackSettings:
    """Read the Node CLI's stack state file (contract §1).

    A stack name is looked up at `<cwd>/.hyperframes/lambda-stack-<name>.json`, like the CLI
    (relative to the working directory, not $HOME); a value ending in `.json` or containing a
    path separator is taken as the file's path.
    """
    value = os.fspath(path_or_stack_name)
    base_dir = Path(cwd) if cwd is not None else Path.cwd()
    if value.endswith(".json") or "/" in value or os.sep in value:
        path = base_dir / Path(value).expanduser()
        name = path.name.removesuffix(".json").removeprefix("lambda-stack-")
    else:
        name = value or DEFAULT_STACK_NAME
        path = base_dir / ".hyperframes" / f"lambda-stack-{name}.json"
    missing = (
        f'[hyperframes lambda] no stack state for "{name}" at {path}. '
        "Run `hyperframes lambda deploy` first."
    )
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise FileNotFoundError(missing) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StackSettingsError(f"{missing} (the file is not valid JSON: {exc})") from None
    if not isinstance(data, dict):
        raise StackSettingsError(f"{missing} (the file is not a JSON object)")
    lacking = [
        key
        for key in ("bucketName", "stateMachineArn")
        if not isinstance(data.get(key), str) or not data[key]
    ]
    if lacking:
        raise StackSettingsError(f"stack state file {path} lacks {' and '.join(lacking)}")
    what = f"stack state file {path}:"
    memory = data.get("lambdaMemoryMb")
    reserved = data.get("reservedConcurrency")
    settings = StackSettings(
        bucket_name=data["bucketName"],
        state_machine_arn=data["stateMachineArn"],
        region=data.get("region") or None,
        lambda_memory_mb=DEFAULT_MEMORY_MB
        if memory is None
        else _memory(memory, f"{what} lambdaMemoryMb"),
        reserved_concurrency=None
        if reserved is None
        else _reserved(reserved, f"{what} reservedConcurrency"),
        stack_name=data.get("stackName") or name,
        source=f"state file {path}",
    )
    return _checked(settings, f"stack state file {path}", None)


# -- the hook ------------------------------------------------------------------------------


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _strip_metadata(response: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


class HyperframesStackHook(AwsBaseHook):
    """One render stack behind one `aws` connection: settings, site upload, executions.

    Settings are resolved once per hook (one CloudFormation call at most). S3 and Step Functions
    calls go through the provider's `S3Hook` and `StepFunctionHook`, in the stack's region.
    """

    conn_name_attr = "aws_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "aws"
    hook_name = "HyperFrames render stack"

    def __init__(
        self,
        conn_id: str = DEFAULT_CONN_ID,
        *,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: Any = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            aws_conn_id=conn_id, region_name=region_name, verify=verify, config=botocore_config
        )
        self.conn_id = conn_id
        self._cwd = cwd
        self._settings: StackSettings | None = None

    # settings -----------------------------------------------------------------------------

    def get_stack_settings(self) -> StackSettings:
        """Where the stack is, from the connection's extra (cached on the hook)."""
        if self._settings is None:
            try:
                conn = self.get_connection(self.conn_id)
            except AirflowNotFoundException as exc:
                raise StackSettingsError(
                    f"Connection {self.conn_id!r} is not defined; create an Amazon Web Services "
                    'connection with extra "bucket_name" and "state_machine_arn", or '
                    '"stack_name", or "state_file"'
                ) from exc
            extra = conn.extra_dejson
            region = self._region_name or extra.get("region_name") or None
            self._settings = settings_from_extra(
                self.conn_id,
                extra,
                conn_region=region,
                describe_stack=self.describe_stack,
                cwd=self._cwd,
            )
            self.log.info("HyperFrames stack from %s", self._settings.source)
        return self._settings

    def describe_stack(self, stack_name: str) -> StackSettings:
        """Settings from a CloudFormation stack's outputs (and sizing parameters)."""
        cfn = CloudFormationHook(
            aws_conn_id=self.conn_id,
            region_name=self._region_name,
            verify=self._verify,
            config=self._config,
        )
        label = f"CloudFormation stack {stack_name!r} (connection {self.conn_id!r})"
        try:
            stacks = cfn.get_conn().describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                raise StackSettingsError(
                    f"{label} does not exist in region {cfn.conn_region_name}"
                ) from exc
            raise
        stack = stacks[0]
        outputs = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs") or []}
        params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}
        arn = next((outputs[k] for k in STATE_MACHINE_OUTPUTS if outputs.get(k)), None)
        bucket = outputs.get(BUCKET_OUTPUT)
        if not bucket or not arn:
            lacking = [BUCKET_OUTPUT] if not bucket else []
            lacking += [] if arn else [STATE_MACHINE_OUTPUTS[0]]
            raise StackSettingsError(
                f"{label} has no output {' or '.join(lacking)} (outputs: "
                f"{', '.join(sorted(outputs)) or 'none'}). Stacks deployed with `hyperframes "
                "lambda deploy` have them; a CDK stack must add these CfnOutputs"
            )
        memory = params.get("LambdaMemoryMb")
        reserved = params.get("ReservedConcurrency")
        return StackSettings(
            bucket_name=bucket,
            state_machine_arn=arn,
            region=None,
            lambda_memory_mb=DEFAULT_MEMORY_MB
            if memory in (None, "")
            else _memory(memory, f"{label}: parameter LambdaMemoryMb"),
            reserved_concurrency=None
            if reserved in (None, "")
            else _reserved(reserved, f"{label}: parameter ReservedConcurrency"),
            stack_name=stack_name,
            source=f"CloudFormation stack {stack_name!r} outputs (connection {self.conn_id!r})",
        )

    @property
    def bucket_name(self) -> str:
        return self.get_stack_settings().bucket_name

    @property
    def state_machine_arn(self) -> str:
        return self.get_stack_settings().state_machine_arn

    @cached_property
    def s3_hook(self) -> S3Hook:
        return S3Hook(
            aws_conn_id=self.conn_id,
            region_name=self.get_stack_settings().region,
            verify=self._verify,
            config=self._config,
        )

    @cached_property
    def sfn_hook(self) -> StepFunctionHook:
        return StepFunctionHook(
            aws_conn_id=self.conn_id,
            region_name=self.get_stack_settings().region,
            verify=self._verify,
            config=self._config,
        )

    # S3 ------------------------------------------------------------------------------------

    def site_exists(self, key: str) -> dict[str, Any] | None:
        """HeadObject in the stack bucket: the metadata, or None when the key is missing.

        A 403 is raised, not read as "missing": without `s3:ListBucket` S3 answers 403 for a
        missing key, and guessing would re-upload (or skip) sites on the wrong evidence.
        """
        bucket = self.bucket_name
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

    def upload_site(self, project_dir: str | os.PathLike[str], site_id: str) -> SiteHandle:
        """Tar the project and PutObject `sites/<siteId>/project.tar.gz` (no existence check)."""
        bucket = self.bucket_name
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
        return SiteHandle(
            site_id=site_id, project_uri=f"s3://{bucket}/{key}", uploaded=True, bytes=size
        )

    # Step Functions ------------------------------------------------------------------------

    def start_execution(self, name: str, input_json: str) -> str:
        """StartExecution on the stack's state machine with the input string as is; the ARN."""
        return self.sfn_hook.start_execution(
            self.state_machine_arn, name=name, state_machine_input=input_json
        )

    def describe_execution(self, execution_arn: str) -> dict[str, Any] | None:
        """DescribeExecution, or None when the execution does not exist."""
        try:
            response = self.sfn_hook.describe_execution(execution_arn)
        except ClientError as exc:
            if _error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise
        return _strip_metadata(response)

    def stop_execution(
        self, execution_arn: str, *, error: str | None = None, cause: str | None = None
    ) -> bool:
        """Stop a RUNNING execution; True if this call stopped it.

        Idempotent and safe to repeat: a missing or already closed execution gives False.
        """
        describe = self.describe_execution(execution_arn)
        if describe is None or describe.get("status") != "RUNNING":
            return False
        kwargs: dict[str, Any] = {"executionArn": execution_arn}
        if error:
            kwargs["error"] = error[:_STOP_ERROR_MAX]
        if cause:
            kwargs["cause"] = cause[:_STOP_CAUSE_MAX]
        try:
            self.sfn_hook.conn.stop_execution(**kwargs)
        except ClientError:
            after = self.describe_execution(execution_arn)
            if after is None or after.get("status") != "RUNNING":
                return False  # it closed (or vanished) between the two calls
            raise
        return True

    def get_execution_history(
        self, execution_arn: str, max_pages: int = MAX_HISTORY_PAGES
    ) -> list[dict[str, Any]]:
        """The events in forward order, up to `max_pages` pages of 1000 (the SDK's limit).

        A missing execution has no history: [].
        """
        events: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(max_pages):
            kwargs: dict[str, Any] = {
                "executionArn": execution_arn,
                "maxResults": HISTORY_PAGE_SIZE,
                "reverseOrder": False,
            }
            if token:
                kwargs["nextToken"] = token
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
        return events

    def list_executions(
        self, status_filter: str | None = "RUNNING", max_pages: int = 10
    ) -> list[dict[str, Any]]:
        """ListExecutions of the stack's state machine (newest first), 1000 per page."""
        executions: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machine_arn, "maxResults": 1000}
        if status_filter:
            kwargs["statusFilter"] = status_filter
        for _ in range(max_pages):
            page = self.sfn_hook.conn.list_executions(**kwargs)
            executions.extend(page.get("executions", []))
            token = page.get("nextToken")
            if not token:
                break
            kwargs["nextToken"] = token
        return executions
