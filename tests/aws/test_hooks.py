"""HyperframesStackHook against a real moto server: stack settings, site upload, executions."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest

from devstack.moto_stack import MotoStack, eventually
from hyperframes_airflow.contract.stack import (
    StackSettings,
    StackSettingsError,
    read_cli_state_file,
)
from hyperframes_airflow.hooks.stack import HyperframesStackHook, SiteAccessDenied


def _use_conn(
    monkeypatch: pytest.MonkeyPatch,
    stack: MotoStack,
    conn_id: str = "hyperframes_default",
    *,
    with_stack: bool = True,
    **extra: object,
) -> HyperframesStackHook:
    for key, value in stack.airflow_conn_env(conn_id, with_stack=with_stack, **extra).items():
        monkeypatch.setenv(key, value)
    return HyperframesStackHook(conn_id)


def _write_state_file(directory: Path, name: str, stack: MotoStack, **overrides: object) -> Path:
    """Exactly what `hyperframes lambda deploy` writes: JSON.stringify(outputs, null, 2) + NL."""
    outputs: dict[str, object] = {
        "stackName": name,
        "region": stack.region,
        "bucketName": stack.bucket,
        "stateMachineArn": stack.state_machine_arn,
        "functionName": "hyperframes-render",
        "lambdaMemoryMb": 3008,
        "reservedConcurrency": 8,
        "deployedAt": "2026-11-29T10:00:00.000Z",
    }
    outputs.update(overrides)
    path = directory / ".hyperframes" / f"lambda-stack-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outputs, indent=2) + "\n", encoding="utf-8")
    return path


# -- settings from the connection ---------------------------------------------------------


def test_settings_from_bucket_and_state_machine_extra(
    hf_conn: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = HyperframesStackHook().get_stack_settings()
    assert settings == StackSettings(
        bucket_name=hf_conn.bucket,
        state_machine_arn=hf_conn.state_machine_arn,
        region=hf_conn.region,
        source="connection 'hyperframes_default' extra",
    )
    hook = _use_conn(
        monkeypatch,
        hf_conn,
        "hf_sized",
        lambda_memory_mb="3008",
        reserved_concurrency=-1,
        region_name=None,
    )
    sized = hook.get_stack_settings()
    assert (sized.lambda_memory_mb, sized.reserved_concurrency) == (3008, None)
    assert sized.region == hf_conn.region  # taken from the state machine ARN


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {},
            'Connection \'hf_bad\' must set extra "bucket_name" and "state_machine_arn", or '
            '"stack_name" (CloudFormation), or "state_file"',
        ),
        ({"bucket_name": "b"}, 'sets extra "bucket_name" but not "state_machine_arn"'),
        ({"state_machine_arn": "arn"}, 'sets extra "state_machine_arn" but not "bucket_name"'),
        (
            {"bucket_name": "b", "state_machine_arn": "x", "stack_name": "s"},
            'sets "bucket_name"/"state_machine_arn" and "stack_name": these are alternative',
        ),
        ({"stack_name": "s", "state_file": "f.json"}, 'sets "stack_name" and "state_file"'),
        (
            {"bucket_name": "s3://b", "state_machine_arn": "x"},
            "the bucket must be a bare bucket name",
        ),
        (
            {"bucket_name": "b", "state_machine_arn": "arn:aws:lambda:us-east-1:1:function:f"},
            "the state machine ARN must look like arn:aws:states:",
        ),
        (
            {
                "bucket_name": "b",
                "state_machine_arn": "arn:aws:states:eu-west-1:123456789012:stateMachine:m",
            },
            "is in region eu-west-1, but the connection uses region us-east-1",
        ),
        (
            {"bucket_name": "b", "state_machine_arn": "x", "lambda_memory_mb": "lots"},
            'extra "lambda_memory_mb" must be an integer in [128, 10240]',
        ),
    ],
)
def test_missing_or_contradictory_settings_are_named(
    moto_stack: MotoStack,
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, str],
    message: str,
) -> None:
    if "state_machine_arn" in extra and extra["state_machine_arn"] == "x":
        extra = {**extra, "state_machine_arn": moto_stack.state_machine_arn}
    hook = _use_conn(monkeypatch, moto_stack, "hf_bad", with_stack=False, **extra)
    with pytest.raises(StackSettingsError) as caught:
        hook.get_stack_settings()
    assert message in str(caught.value)


def test_undefined_connection_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HF_NOWHERE", raising=False)
    with pytest.raises(StackSettingsError, match="Connection 'hf_nowhere' is not defined"):
        HyperframesStackHook("hf_nowhere").get_stack_settings()


# -- CloudFormation -------------------------------------------------------------------------


def test_settings_from_cloudformation_outputs(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"hf-{uuid.uuid4().hex[:8]}"
    moto_stack.create_cloudformation_stack(
        name,
        {
            "RenderBucketName": moto_stack.bucket,
            "RenderStateMachineArn": moto_stack.state_machine_arn,
        },
        {"LambdaMemoryMb": "4096", "ReservedConcurrency": "8"},
    )
    hook = _use_conn(monkeypatch, moto_stack, "hf_cfn", with_stack=False, stack_name=name)
    settings = hook.get_stack_settings()
    assert settings.bucket_name == moto_stack.bucket
    assert settings.state_machine_arn == moto_stack.state_machine_arn
    assert (settings.lambda_memory_mb, settings.reserved_concurrency) == (4096, 8)
    assert settings.stack_name == name
    assert "CloudFormation stack" in settings.source


def test_cloudformation_cdk_output_name_and_missing_pieces(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cdk = f"hf-cdk-{uuid.uuid4().hex[:8]}"
    moto_stack.create_cloudformation_stack(
        cdk,
        {"RenderBucketName": moto_stack.bucket, "StateMachineArn": moto_stack.state_machine_arn},
    )
    hook = _use_conn(monkeypatch, moto_stack, "hf_cdk", with_stack=False, stack_name=cdk)
    settings = hook.get_stack_settings()
    assert settings.state_machine_arn == moto_stack.state_machine_arn
    assert settings.lambda_memory_mb == 10240  # no LambdaMemoryMb parameter: the default

    bare = f"hf-bare-{uuid.uuid4().hex[:8]}"
    moto_stack.create_cloudformation_stack(bare, {"Other": "x"})
    hook = _use_conn(monkeypatch, moto_stack, "hf_bare", with_stack=False, stack_name=bare)
    with pytest.raises(StackSettingsError, match="has no output RenderBucketName or Render"):
        hook.get_stack_settings()

    hook = _use_conn(monkeypatch, moto_stack, "hf_gone", with_stack=False, stack_name="nope")
    with pytest.raises(StackSettingsError, match=r"'nope'.*does not exist in region us-east-1"):
        hook.get_stack_settings()


# -- the CLI state file ---------------------------------------------------------------------


def test_read_cli_state_file_by_name_and_by_path(moto_stack: MotoStack, tmp_path: Path) -> None:
    path = _write_state_file(tmp_path, "hyperframes-default", moto_stack)
    by_name = read_cli_state_file("hyperframes-default", cwd=tmp_path)
    assert by_name == StackSettings(
        bucket_name=moto_stack.bucket,
        state_machine_arn=moto_stack.state_machine_arn,
        region=moto_stack.region,
        lambda_memory_mb=3008,
        reserved_concurrency=8,
        stack_name="hyperframes-default",
        source=f"state file {path}",
    )
    assert read_cli_state_file(str(path)) == by_name
    assert read_cli_state_file(".hyperframes/lambda-stack-hyperframes-default.json", tmp_path) == (
        by_name
    )


def test_missing_state_file_message_mirrors_the_cli(tmp_path: Path) -> None:
    expected = (
        f'[hyperframes lambda] no stack state for "prod" at '
        f"{tmp_path / '.hyperframes' / 'lambda-stack-prod.json'}. "
        "Run `hyperframes lambda deploy` first."
    )
    with pytest.raises(FileNotFoundError) as caught:
        read_cli_state_file("prod", cwd=tmp_path)
    assert str(caught.value) == expected


def test_unreadable_state_files_say_why(moto_stack: MotoStack, tmp_path: Path) -> None:
    path = _write_state_file(tmp_path, "broken", moto_stack)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(StackSettingsError, match="not valid JSON"):
        read_cli_state_file("broken", cwd=tmp_path)
    _write_state_file(tmp_path, "partial", moto_stack, stateMachineArn=None)
    with pytest.raises(StackSettingsError, match="lacks stateMachineArn"):
        read_cli_state_file("partial", cwd=tmp_path)


def test_settings_from_a_state_file_connection(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _write_state_file(tmp_path, "staging", moto_stack, reservedConcurrency=-1)
    hook = _use_conn(
        monkeypatch, moto_stack, "hf_file", with_stack=False, state_file=str(path), region_name=None
    )
    settings = hook.get_stack_settings()
    assert (settings.bucket_name, settings.region) == (moto_stack.bucket, moto_stack.region)
    assert (settings.stack_name, settings.reserved_concurrency) == ("staging", None)
    assert settings.source == f"state file {path} (connection 'hf_file')"


# -- S3 -------------------------------------------------------------------------------------


def _project(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<html data-composition-id='t'></html>\n")
    (root / "assets" / "logo.svg").write_text("<svg/>")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "junk.js").write_text("junk")
    return root


def test_upload_site_then_site_exists(hf_conn: MotoStack, tmp_path: Path) -> None:
    hook = HyperframesStackHook()
    site = f"test{uuid.uuid4().hex[:12]}"
    key = f"sites/{site}/project.tar.gz"
    assert hook.head(key) is None

    size = hook.upload_site(_project(tmp_path / "p"), site)

    head = hook.head(key)
    assert head is not None
    assert head["ContentLength"] == size
    assert head["ContentType"] == "application/gzip"
    body = hf_conn.boto3_client("s3").get_object(Bucket=hf_conn.bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["assets", "assets/logo.svg", "index.html"]


def test_head_object_denied_is_a_permission_error(hf_conn: MotoStack) -> None:
    hook = HyperframesStackHook()
    hook.get_stack_settings()
    with hf_conn.enforce_iam(), pytest.raises(SiteAccessDenied) as caught:
        hook.head("sites/denied/project.tar.gz")
    message = str(caught.value)
    assert "HeadObject" in message and "denied (403)" in message
    assert f"s3:ListBucket on arn:aws:s3:::{hf_conn.bucket}" in message
    assert "s3:GetObject" in message


# -- Step Functions -------------------------------------------------------------------------


def test_execution_calls_on_missing_executions_are_quiet(hf_conn: MotoStack) -> None:
    hook = HyperframesStackHook()
    missing = hf_conn.state_machine_arn.replace(":stateMachine:", ":execution:") + ":nope"
    assert hook.describe_execution(missing) is None
    assert hook.stop_execution(missing, cause="test") is False
    assert hook.get_execution_history(missing) == []


def test_describe_history_and_stop(hf_conn: MotoStack) -> None:
    hook = HyperframesStackHook()
    name = f"hook-{uuid.uuid4().hex[:12]}"
    payload = '{"Config":{"format":"mp4","variables":{"hfTestFate":"hang"}}}'
    arn = hf_conn.boto3_client("stepfunctions").start_execution(
        stateMachineArn=hf_conn.state_machine_arn, name=name, input=payload
    )["executionArn"]
    describe = hook.describe_execution(arn)
    assert describe is not None and describe["input"] == payload
    assert "ResponseMetadata" not in describe

    assert hook.stop_execution(arn, cause="test") is True
    eventually(lambda: hook.describe_execution(arn), lambda d: d["status"] != "RUNNING")
    assert hook.stop_execution(arn, cause="test") is False  # already closed: a no-op
    stopped = hook.describe_execution(arn)
    assert stopped is not None and stopped["status"] == "ABORTED"
    events = hook.get_execution_history(arn)
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1]["type"] == "ExecutionAborted"
