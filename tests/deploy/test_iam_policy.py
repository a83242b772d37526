"""docs/iam-policy.json is exactly what the plugin needs: every call allowed, nothing more.

Two independent checks:

- **Static.** Every S3 / Step Functions / CloudFormation operation named in `hyperframes_airflow/`
  (found by matching call names against botocore's own service models, plus the S3 calls that
  `ObjectStoragePath` makes through s3fs) maps to an IAM action, and the policy must allow each
  one on the right resource ARN (bucket, objects, state machine, its executions, the stack) and
  nothing else: no wildcard actions, no action the code does not need, no other state machine's
  executions, no other bucket.
- **Dynamic.** A moto IAM user holding the policy runs the whole Lambda batch DAG (read the batch,
  deploy the site, start, wait in the trigger, read history, write the manifest), resolves the
  stack through CloudFormation and stops a render, with moto enforcing IAM on every request; the
  calls moto served, mapped to IAM actions, must equal the policy's actions. Dropping any one
  statement makes a real call fail (so enforcement is not vacuous).

moto checks S3 against real resource ARNs, but checks other services against the resource `*`
(moto 5.2.5 `core/responses.py` `call_action`), so under moto the Step Functions and
CloudFormation statements are widened to `*`; their ARNs are checked by the static test.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import json
import re
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.moto_stack import TEST_ACCOUNT, MotoStack
from tests.conftest import REPO, forget_object_stores

POLICY_PATH = REPO / "docs" / "iam-policy.json"
PACKAGE = REPO / "hyperframes_airflow"
TEMPLATE = REPO / "examples" / "templates" / "welcome"

#: boto3 service name -> IAM prefix, for the services the plugin is allowed to call.
SERVICES = {"s3": "s3", "stepfunctions": "states", "cloudformation": "cloudformation"}
ALLOWED_PROVIDER_HOOKS = {"base_aws", "s3", "step_function", "cloud_formation"}

#: API operation -> IAM action, where they differ (S3 authorises reads and listings by other names).
IAM_ACTION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:AbortMultipartUpload": "s3:AbortMultipartUpload",
}
#: What `ObjectStoragePath` on s3:// does through s3fs: read the batch (HeadObject + ranged
#: GetObject), write the manifest (PutObject, multipart beyond 50 MB), and list when a HEAD
#: misses (s3fs `info` falls back to ListObjectsV2 to tell a "directory" from nothing).
OBJECT_STORAGE_OPERATIONS = {"s3:HeadObject", "s3:GetObject", "s3:PutObject", "s3:ListObjectsV2"}
#: HeadObject only tells "missing" (404) from "denied" (403) with s3:ListBucket on the bucket.
IMPLIED = {"s3:HeadObject": {"s3:ListBucket"}}

SAMPLE = {
    "<BUCKET>": "hf-renders",
    "<REGION>": "eu-west-1",
    "<ACCOUNT_ID>": "111122223333",
    "<STATE_MACHINE_NAME>": "hyperframes-render",
    "<STACK_NAME>": "hf-stack",
}
SM = "arn:aws:states:eu-west-1:111122223333:stateMachine:hyperframes-render"
EXECUTION = "arn:aws:states:eu-west-1:111122223333:execution:hyperframes-render:hf-a1b2-0001-1"
STACK = "arn:aws:cloudformation:eu-west-1:111122223333:stack/hf-stack/0f1e2d3c-aaaa-bbbb-cccc"
#: Where each action must be allowed (real resources the plugin touches)...
NEEDED_ON = {
    "s3:ListBucket": ["arn:aws:s3:::hf-renders"],
    "s3:GetObject": [
        "arn:aws:s3:::hf-renders/sites/0123456789abcdef/project.tar.gz",
        "arn:aws:s3:::hf-renders/batches/2026-11-29.jsonl",
    ],
    "s3:PutObject": [
        "arn:aws:s3:::hf-renders/sites/0123456789abcdef/project.tar.gz",
        "arn:aws:s3:::hf-renders/manifests/dag/run.json",
    ],
    "states:StartExecution": [SM],
    "states:ListExecutions": [SM],
    "states:DescribeExecution": [EXECUTION],
    "states:GetExecutionHistory": [EXECUTION],
    "states:StopExecution": [EXECUTION],
    "cloudformation:DescribeStacks": [STACK],
}
#: ...and where it must not be (neighbours of those resources).
DENIED_ON = {
    "s3:ListBucket": ["arn:aws:s3:::other-bucket", "*"],
    "s3:GetObject": ["arn:aws:s3:::other-bucket/sites/x", "arn:aws:s3:::hf-renders-2/x"],
    "s3:PutObject": ["arn:aws:s3:::other-bucket/x", "arn:aws:s3:::hf-renders"],
    "states:StartExecution": [SM.replace("hyperframes-render", "other"), EXECUTION, "*"],
    "states:ListExecutions": [SM.replace("hyperframes-render", "other")],
    "states:DescribeExecution": [EXECUTION.replace(":hyperframes-render:", ":other:"), SM],
    "states:GetExecutionHistory": [EXECUTION.replace(":hyperframes-render:", ":other:")],
    "states:StopExecution": [
        EXECUTION.replace(":hyperframes-render:", ":other:"),
        EXECUTION.replace(":111122223333:", ":444455556666:"),
    ],
    "cloudformation:DescribeStacks": [STACK.replace("/hf-stack/", "/other/"), "*"],
}


# -- the policy document ---------------------------------------------------------------------


def _policy(values: dict[str, str]) -> dict[str, Any]:
    text = POLICY_PATH.read_text(encoding="utf-8")
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    assert "<" not in text, f"unreplaced placeholder in {POLICY_PATH}"
    policy: dict[str, Any] = json.loads(text)
    return policy


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _glob(pattern: str, value: str, *, ignore_case: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.IGNORECASE if ignore_case else 0) is not None


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """IAM evaluation for identity policies without conditions: an Allow and no Deny."""

    def matches(statement: dict[str, Any]) -> bool:
        return any(
            _glob(a, action, ignore_case=True) for a in _as_list(statement["Action"])
        ) and any(_glob(r, resource, ignore_case=False) for r in _as_list(statement["Resource"]))

    hits = [s for s in policy["Statement"] if matches(s)]
    return any(s["Effect"] == "Allow" for s in hits) and not any(
        s["Effect"] == "Deny" for s in hits
    )


def policy_actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] for a in _as_list(s["Action"])}


# -- what the code calls ---------------------------------------------------------------------


def _operations_by_call_name() -> dict[str, str]:
    """`start_execution` -> `states:StartExecution`, from botocore's service models."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    names: dict[str, str] = {}
    for service, prefix in SERVICES.items():
        for operation in session.get_service_model(service).operation_names:
            snake = xform_name(operation)
            assert snake not in names, f"{snake} is ambiguous across services"
            names[snake] = f"{prefix}:{operation}"
    return names


def called_operations() -> dict[str, list[str]]:
    """Every AWS operation the package calls by name -> where (file:line)."""
    by_name = _operations_by_call_name()
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                operation = by_name.get(node.func.attr)
                if operation:
                    found.setdefault(operation, []).append(f"{where}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id == "ObjectStoragePath":
                for operation in OBJECT_STORAGE_OPERATIONS:
                    found.setdefault(operation, []).append(f"{where}:{node.lineno} (s3fs)")
    return found


def required_actions() -> dict[str, list[str]]:
    """IAM action -> the call sites that need it."""
    needed: dict[str, list[str]] = {}
    for operation, sites in called_operations().items():
        for action in {IAM_ACTION.get(operation, operation), *IMPLIED.get(operation, ())}:
            needed.setdefault(action, []).extend(f"{operation} at {s}" for s in sites)
    return needed


# -- static checks ---------------------------------------------------------------------------


def test_policy_is_well_formed_and_has_no_wildcard_grants() -> None:
    raw = json.loads(POLICY_PATH.read_text(encoding="utf-8"))
    assert raw["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in raw["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in raw["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}, statement["Sid"]
        for action in _as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9]+:[A-Za-z]+", action), f"wildcard action {action}"
        for resource in _as_list(statement["Resource"]):
            assert resource.startswith("arn:aws:"), f"{statement['Sid']}: {resource}"
    placeholders = set(re.findall(r"<[A-Z_]+>", POLICY_PATH.read_text(encoding="utf-8")))
    assert placeholders == set(SAMPLE)


def test_the_guide_shows_this_policy_and_its_sed_fills_every_placeholder() -> None:
    guide = (REPO / "docs" / "deploying.md").read_text(encoding="utf-8")
    section = guide[guide.index("## Least-privilege IAM") :]
    shown = re.search(r"```json\n(.*?)```", section, flags=re.S)
    assert shown and json.loads(shown[1]) == json.loads(POLICY_PATH.read_text(encoding="utf-8"))
    script = re.search(r"```bash\n(sed .*?docs/iam-policy.json)", section, flags=re.S)
    assert script, "the guide's sed command"
    filled = subprocess.run(
        ["bash", "-c", script[1].replace(" > policy.json", "")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "<" not in filled and json.loads(filled)["Statement"]


def test_the_package_only_talks_to_s3_step_functions_and_cloudformation() -> None:
    """New AWS services (a client_type, a provider hook) must come with a policy update."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "airflow.providers.amazon.aws.hooks."
            ):
                hook_module = (node.module or "").rsplit(".", 1)[-1]
                assert hook_module in ALLOWED_PROVIDER_HOOKS, f"{path}: {node.module}"
            if isinstance(node, ast.Call):
                literal = [
                    k.value.value
                    for k in node.keywords
                    if k.arg in ("client_type", "service_name")
                    and isinstance(k.value, ast.Constant)
                ]
                if isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "client",
                    "create_client",
                ):
                    literal += [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
                for service in literal:
                    assert service in SERVICES, f"{path}:{node.lineno} uses AWS {service!r}"


def test_every_call_the_plugin_makes_is_allowed_on_its_resource() -> None:
    policy = _policy(SAMPLE)
    needed = required_actions()
    # The scan must see the calls we know are there, or it is scanning nothing.
    assert {"states:StartExecution", "states:StopExecution", "s3:PutObject"} <= set(needed)
    missing = sorted(set(needed) - set(NEEDED_ON))
    assert not missing, f"new AWS actions, add them to the policy and this test: {missing}"
    for action in needed:
        for resource in NEEDED_ON[action]:
            assert allowed(policy, action, resource), (
                f"{action} on {resource} is denied; needed by {needed[action][:3]}"
            )


def test_the_policy_grants_nothing_beyond_what_the_code_calls() -> None:
    policy = _policy(SAMPLE)
    needed = set(required_actions())
    assert policy_actions(policy) == needed, (
        f"extra: {sorted(policy_actions(policy) - needed)}; "
        f"missing: {sorted(needed - policy_actions(policy))}"
    )
    for action, resources in DENIED_ON.items():
        for resource in resources:
            assert not allowed(policy, action, resource), f"{action} allowed on {resource}"
    for action in ("s3:DeleteObject", "states:CreateStateMachine", "iam:PassRole", "s3:*"):
        assert not allowed(policy, action, "*")
        assert not allowed(policy, action, "arn:aws:s3:::hf-renders/x")


# -- dynamic: moto with IAM enforcement --------------------------------------------------------


@pytest.fixture(scope="module")
def iam_stack() -> Iterator[MotoStack]:
    """A server of our own: IAM enforcement is server-wide, and users accumulate."""
    with MotoStack(count_calls=True) as stack:
        stack.create_cloudformation_stack(
            "hf-stack",
            {"RenderBucketName": stack.bucket, "RenderStateMachineArn": stack.state_machine_arn},
        )
        yield stack


def _moto_policy(stack: MotoStack, drop_sid: str | None = None) -> dict[str, Any]:
    """The docs' policy for this stack, non-S3 resources widened to `*` (see module doc)."""
    policy = _policy(
        {
            "<BUCKET>": stack.bucket,
            "<REGION>": stack.region,
            "<ACCOUNT_ID>": TEST_ACCOUNT,
            "<STATE_MACHINE_NAME>": stack.state_machine_name,
            "<STACK_NAME>": "hf-stack",
        }
    )
    widened = copy.deepcopy(policy)
    widened["Statement"] = [s for s in widened["Statement"] if s["Sid"] != drop_sid]
    for statement in widened["Statement"]:
        if not str(statement["Resource"]).startswith("arn:aws:s3:::"):
            statement["Resource"] = "*"
    return widened


def _user_env(stack: MotoStack, policy: dict[str, Any], **extra: Any) -> dict[str, str]:
    """An IAM user holding `policy`, as the `hyperframes_default` connection env var."""
    iam = stack.boto3_client("iam")
    name = f"hf-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    fields = {"region_name": stack.region, "endpoint_url": stack.endpoint_url, **extra}
    conn = {
        "conn_type": "aws",
        "login": key["AccessKeyId"],
        "password": key["SecretAccessKey"],
        "extra": fields,
    }
    return {"AIRFLOW_CONN_HYPERFRAMES_DEFAULT": json.dumps(conn)}


def _iam_actions(calls: Counter[str]) -> set[str]:
    return {IAM_ACTION.get(call, call) for call, count in calls.items() if count}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_user_with_exactly_this_policy_runs_a_whole_batch(
    iam_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import DAG

    from hyperframes_airflow.backends.lambda_ import LambdaBackend
    from hyperframes_airflow.batch import render_batch
    from hyperframes_airflow.contract.config import RenderConfig
    from tests.airflow_helpers import run_dag

    stack = iam_stack
    rows = [
        {"outputKey": "videos/ok.mp4", "variables": {"title": "Hi"}},
        {"outputKey": "videos/slow.mp4", "variables": {"hfTestSeconds": 1}},
        {"outputKey": "videos/boom.mp4", "variables": {"hfTestFate": "fail"}},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    stack.boto3_client("s3").put_object(Bucket=stack.bucket, Key="batches/iam.jsonl", Body=body)
    # stack_name: the connection finds the stack through cloudformation:DescribeStacks.
    env = _user_env(stack, _moto_policy(stack), stack_name="hf-stack")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    forget_object_stores()

    with DAG(dag_id="hf_deploy_iam", schedule=None, catchup=False) as dag:
        render_batch(
            project_dir=str(TEMPLATE),
            batch=f"s3://{stack.bucket}/batches/iam.jsonl",
            config=RenderConfig(width=640, height=360, fps=30),
            backend="lambda",
            poll_interval=0.3,
        )
    stack.reset_calls()
    with stack.enforce_iam():
        run = run_dag(dag)
        # Cancelling: what on_kill does (StopExecution) on a render that is still running.
        hook = LambdaBackend().hook
        hang = json.dumps({"Config": {"format": "mp4", "variables": {"hfTestFate": "hang"}}})
        arn = asyncio.run(
            hook.async_start_execution(
                f"iam-stop-{uuid.uuid4().hex[:8]}",
                hang,
                state_machine_arn=hook.get_stack_settings().state_machine_arn,
                region=stack.region,
            )
        )
        assert arn is not None and hook.stop_execution(arn, cause="test: on_kill") is True
    calls = stack.reset_calls()

    assert str(run.state) == "failed"  # the "fail" row, and only that row, failed
    s3 = stack.boto3_client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix="manifests/hf_deploy_iam/")
    manifest = json.loads(
        s3.get_object(Bucket=stack.bucket, Key=listed["Contents"][0]["Key"])["Body"].read()
    )
    assert [(r["status"], r.get("error")) for r in manifest["rows"]] == [
        ("succeeded", None),
        ("succeeded", None),
        ("failed", "FONT_FETCH_FAILED"),
    ]
    used = _iam_actions(calls)
    granted = policy_actions(_moto_policy(stack))
    assert used <= granted, f"calls outside the policy: {sorted(used - granted)}"
    # ListBucket only shows on AWS (moto answers a missing HeadObject 404 without it).
    assert granted - used <= {"s3:ListBucket"}, f"granted but unused: {sorted(granted - used)}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("drop", "call"),
    [
        ("RenderBucketObjects", "head"),
        ("StartAndListRenders", "start"),
        ("WatchAndStopRenders", "describe"),
        ("FindStackByNameOptional", "settings"),
    ],
)
def test_each_statement_is_needed(
    iam_stack: MotoStack, monkeypatch: pytest.MonkeyPatch, drop: str, call: str
) -> None:
    from botocore.exceptions import ClientError

    from hyperframes_airflow.contract.stack import StackSettingsError
    from hyperframes_airflow.hooks.stack import HyperframesStackHook, SiteAccessDenied

    stack = iam_stack
    extra = {"stack_name": "hf-stack"} if call == "settings" else {}
    if not extra:
        extra = {"bucket_name": stack.bucket, "state_machine_arn": stack.state_machine_arn}
    for key, value in _user_env(stack, _moto_policy(stack, drop_sid=drop), **extra).items():
        monkeypatch.setenv(key, value)
    forget_object_stores()
    existing = stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":nope"
    with stack.enforce_iam():
        hook = HyperframesStackHook()
        with pytest.raises((ClientError, SiteAccessDenied, StackSettingsError)) as caught:
            if call == "head":
                hook.head("sites/0123456789abcdef/project.tar.gz")
            elif call == "start":
                asyncio.run(
                    hook.async_start_execution(
                        f"iam-{uuid.uuid4().hex[:8]}",
                        "{}",
                        state_machine_arn=stack.state_machine_arn,
                        region=stack.region,
                    )
                )
            elif call == "describe":
                hook.describe_execution(existing)
            else:
                hook.get_stack_settings()
    text = str(caught.value)
    assert "AccessDenied" in text or "denied (403)" in text or "403" in text, text
