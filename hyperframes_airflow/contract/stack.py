"""Where a HyperFrames render stack is, from an Airflow connection's extra (pure, no AWS calls).

The extra says where the stack is in one of three ways (contract §1):

- `bucket_name` + `state_machine_arn` (optional `lambda_memory_mb`, `reserved_concurrency`);
- `stack_name`: the CloudFormation outputs `RenderBucketName` / `RenderStateMachineArn` (and the
  stack parameters `LambdaMemoryMb` / `ReservedConcurrency` when present);
- `state_file`: the `.hyperframes/lambda-stack-<name>.json` written by `hyperframes lambda deploy`.

The hook (`hooks/stack.py`) does the one AWS call a stack name needs and hands the answer here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hyperframes_airflow.contract.progress import DEFAULT_MEMORY_MB

__all__ = [
    "BUCKET_OUTPUT",
    "DEFAULT_CONN_ID",
    "DEFAULT_STACK_NAME",
    "STATE_MACHINE_OUTPUTS",
    "StackSettings",
    "StackSettingsError",
    "read_cli_state_file",
    "settings_from_cloudformation",
    "settings_from_extra",
]

#: The Airflow connection `render_batch` and the hook use unless told otherwise.
DEFAULT_CONN_ID = "hyperframes_default"
#: The CLI's `DEFAULT_STACK_NAME`.
DEFAULT_STACK_NAME = "hyperframes-default"
BUCKET_OUTPUT = "RenderBucketName"
#: SAM names it `RenderStateMachineArn`; the CDK docs' example uses `StateMachineArn`.
STATE_MACHINE_OUTPUTS: tuple[str, ...] = ("RenderStateMachineArn", "StateMachineArn")

_STATE_MACHINE_ARN_RE = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):states:(?P<region>[a-z0-9-]+):(?P<account>\d{12})"
    r":stateMachine:(?P<name>[^:\s]+)"
)


class StackSettingsError(ValueError):
    """The connection (or state file, or CloudFormation stack) does not say where the stack is."""


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


def settings_from_cloudformation(
    stack_name: str, stack: Mapping[str, Any], *, label: str
) -> StackSettings:
    """Settings from one `DescribeStacks` entry: its outputs and sizing parameters."""
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
        source=f"{label}: outputs",
    )
