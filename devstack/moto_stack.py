"""A real `moto_server` process standing in for a HyperFrames render stack.

There is no AWS account here, so moto plays AWS. It always runs as a separate `moto_server`
process spoken to over HTTP (never in-process `mock_aws`, which does not cover aiobotocore or
s3fs), exactly as a deployed stack would be reached through an Airflow connection's
`endpoint_url`.

The stack is a bucket plus a STANDARD state machine with the HyperFrames topology (contract §4.3:
SelectPlanProtocol, PlanV2, BuildChunkList, AssertChunkCount, SelectWorkerProtocol, an inline Map
RenderChunksV2 over RenderChunkV2, AssembleV2 ending with `$.Output`), built from Pass, Wait,
Choice, Map and Fail states only, with moto's `execute_state_machine` switched on so executions
really run. Each row's input chooses its fate through its variables:

- `hfTestFate`: `"succeed"` (default, also when absent), `"fail"` (Fail with error
  `FONT_FETCH_FAILED`, or `hfTestError` when given, and a Node-style JSON cause), `"hang"` (a
  Wait of 99,999,999 s, i.e. RUNNING until stopped or timed out);
- `hfTestSeconds`: a Wait of that many seconds before PlanV2 (the render "takes" that long).

A succeeded execution's output ends with `"Output":{"OutputS3Uri":<input's OutputS3Uri>,
"FramesEncoded":60,"FileSize":4096}` and, with no Wait, enters 7 + 2 states, the real happy-path
transition count for two chunks (§5.5). Nothing is written to S3 by an execution.

What moto 5.2.5 does with it (checked by `tests/aws/test_moto_stack.py`):
- Choice with `IsPresent`, `And`, `Not`, `StringEquals`, `NumericGreaterThan`; Wait `Seconds` and
  `SecondsPath`; Pass with `Parameters`/`ResultPath` and intrinsics (`States.Format`,
  `States.ArrayRange`, `States.MathAdd`); inline Map with `ItemSelector`/`ItemProcessor`/
  `MaxConcurrencyPath`; Fail with `Error`/`Cause` or `ErrorPath`; state-machine `TimeoutSeconds`
  (-> `TIMED_OUT`). All work.
- StartExecution with the name of a RUNNING execution and the same input returns that execution
  (idempotent, like AWS); a different input, or a closed execution, gives `ExecutionAlreadyExists`.
- DescribeExecution returns `input` exactly as sent; `error`/`cause` for FAILED; missing ->
  `ExecutionDoesNotExist`. StopExecution aborts at once (even a Wait) but records neither `error`
  nor `cause` (history: `ExecutionAborted` with `error: ""`, `cause: ""`); stopping a closed
  execution succeeds and changes nothing.
- GetExecutionHistory: `ExecutionStarted`, `{Choice,Pass,Wait,Map,Fail}State{Entered,Exited}`,
  `MapStateStarted`, `MapIterationStarted/Succeeded`, `MapStateSucceeded`, then
  `ExecutionSucceeded` (`output`), `ExecutionFailed` (`error`, `cause`), `ExecutionAborted` or
  `ExecutionTimedOut` (empty details). No Task/Lambda events (there are no Tasks), so progress
  counts transitions but no Lambda cost or frames. `maxResults` is ignored: one page, no
  `nextToken`.
- With `instant=True` the state machine is one Pass state that ends with the same `$.Output`
  (no fates, no waits): moto runs it about 7 times faster, for benchmarks at scale.
- With `count_calls=True`, the server process wraps moto's WSGI app to count requests by
  `<signing service>:<action>` (e.g. `states:StartExecution`, `s3:PutObject`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devstack.service import Service, terminate_group

__all__ = ["TEST_ACCOUNT", "MotoStack", "instant_stack_definition", "render_stack_definition"]

TEST_ACCOUNT = "123456789012"
TEST_ROLE_ARN = f"arn:aws:iam::{TEST_ACCOUNT}:role/hyperframes-render-test"
TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
MOCK_FRAMES = 60
MOCK_FILE_SIZE = 4096
MOCK_CHUNKS = 2
HANG_SECONDS = 99_999_999

_VARS = "$.Config.variables"
_NODE_CAUSE = json.dumps(
    {
        "errorType": "FONT_FETCH_FAILED",
        "errorMessage": 'FONT_FETCH_FAILED: could not fetch font "Inter" (moto test stack)',
        "trace": [],
    },
    separators=(",", ":"),
)


def _is(var: str, value: str) -> dict[str, Any]:
    """A Choice rule safe on a missing path (StringEquals alone is a runtime error there)."""
    path = f"{_VARS}.{var}"
    return {
        "And": [
            {"Variable": path, "IsPresent": True},
            {"Variable": path, "IsString": True},
            {"Variable": path, "StringEquals": value},
        ]
    }


#: The end state: a succeeded render's `$.Output`, as the real AssembleV2's ResultSelector makes it.
_ASSEMBLE: dict[str, Any] = {
    "Type": "Pass",
    "Parameters": {
        "OutputS3Uri.$": "$.OutputS3Uri",
        "FramesEncoded": MOCK_FRAMES,
        "FileSize": MOCK_FILE_SIZE,
    },
    "ResultPath": "$.Output",
    "End": True,
}


def instant_stack_definition(*, timeout_seconds: int = 3600) -> dict[str, Any]:
    """One Pass state ending with a succeeded render's `$.Output`: for runs that measure the
    orchestration at scale. moto interprets the full topology at about 10 executions a second
    on one core; this one at about 70."""
    return {
        "Comment": "hyperframes-airflow test stack: every render succeeds at once",
        "StartAt": "AssembleV2",
        "TimeoutSeconds": timeout_seconds,
        "States": {"AssembleV2": _ASSEMBLE},
    }


def render_stack_definition(*, timeout_seconds: int = 3600) -> dict[str, Any]:
    """The test state machine: HyperFrames' v2 topology with Pass states instead of Lambdas."""
    prefix = "$.PlanOutputS3Prefix"
    return {
        "Comment": "hyperframes-airflow test stack: the HyperFrames v2 topology without Lambdas",
        "StartAt": "SelectPlanProtocol",
        "TimeoutSeconds": timeout_seconds,
        "States": {
            # The real Choice only routes on PlanProtocol; the fate rules ride along so the happy
            # path enters exactly the real states (7 + ChunkCount transitions).
            "SelectPlanProtocol": {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.PlanProtocol", "IsPresent": True},
                            {"Not": {"Variable": "$.PlanProtocol", "StringEquals": "v2"}},
                        ],
                        "Next": "UnsupportedPlanProtocol",
                    },
                    {
                        "And": [
                            _is("hfTestFate", "fail"),
                            {"Variable": f"{_VARS}.hfTestError", "IsPresent": True},
                        ],
                        "Next": "PlanV2FailedWithError",
                    },
                    {**_is("hfTestFate", "fail"), "Next": "PlanV2Failed"},
                    {**_is("hfTestFate", "hang"), "Next": "Hang"},
                    {
                        "And": [
                            {"Variable": f"{_VARS}.hfTestSeconds", "IsPresent": True},
                            {"Variable": f"{_VARS}.hfTestSeconds", "IsNumeric": True},
                        ],
                        "Next": "RenderTime",
                    },
                ],
                "Default": "PlanV2",
            },
            "UnsupportedPlanProtocol": {
                "Type": "Fail",
                "Error": "PLAN_PROTOCOL_UNSUPPORTED",
                "Cause": 'PlanProtocol must be "v1", "v2", or absent (defaults to v2).',
            },
            "PlanV2Failed": {"Type": "Fail", "Error": "FONT_FETCH_FAILED", "Cause": _NODE_CAUSE},
            "PlanV2FailedWithError": {
                "Type": "Fail",
                "ErrorPath": f"{_VARS}.hfTestError",
                "Cause": _NODE_CAUSE,
            },
            "Hang": {"Type": "Wait", "Seconds": HANG_SECONDS, "Next": "PlanV2"},
            "RenderTime": {
                "Type": "Wait",
                "SecondsPath": f"{_VARS}.hfTestSeconds",
                "Next": "PlanV2",
            },
            "PlanV2": {
                "Type": "Pass",
                "Parameters": {
                    "PlanProtocol": "v2",
                    "PlanV2ManifestS3Uri.$": f"States.Format('{{}}v2/manifest.json', {prefix})",
                    "PlanV2ArtifactS3Prefix.$": f"States.Format('{{}}v2/artifacts/', {prefix})",
                    "PlanHash": "moto-test-plan-hash",
                    "ChunkCount": MOCK_CHUNKS,
                    "Format.$": "$.Config.format",
                    "HasAudio": False,
                },
                "ResultPath": "$.Plan",
                "Next": "BuildChunkList",
            },
            "BuildChunkList": {
                "Type": "Pass",
                "Parameters": {
                    "ChunkIndexes.$": (
                        "States.ArrayRange(0, States.MathAdd($.Plan.ChunkCount, -1), 1)"
                    )
                },
                "ResultPath": "$.Iterator",
                "Next": "AssertChunkCount",
            },
            "AssertChunkCount": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.Plan.ChunkCount",
                        "NumericGreaterThan": 0,
                        "Next": "SelectWorkerProtocol",
                    }
                ],
                "Default": "PlanProducedZeroChunks",
            },
            "PlanProducedZeroChunks": {
                "Type": "Fail",
                "Error": "PLAN_TOO_LARGE",
                "Cause": "Plan returned ChunkCount=0 — non-retryable producer-side invariant "
                "violation.",
            },
            "SelectWorkerProtocol": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.Plan.PlanProtocol",
                        "StringEquals": "v2",
                        "Next": "RenderChunksV2",
                    }
                ],
                "Default": "UnsupportedPlanProtocol",
            },
            "RenderChunksV2": {
                "Type": "Map",
                "ItemsPath": "$.Iterator.ChunkIndexes",
                "MaxConcurrencyPath": "$.Plan.ChunkCount",
                "ItemSelector": {
                    "ChunkIndex.$": "$$.Map.Item.Value",
                    "ChunkOutputS3Prefix.$": prefix,
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "RenderChunkV2",
                    "States": {
                        "RenderChunkV2": {
                            "Type": "Pass",
                            "Parameters": {
                                "ChunkS3Uri.$": (
                                    "States.Format('{}chunks/{}.mp4', "
                                    "$.ChunkOutputS3Prefix, $.ChunkIndex)"
                                ),
                                "ChunkIndex.$": "$.ChunkIndex",
                                "Sha256": "0" * 64,
                            },
                            "End": True,
                        }
                    },
                },
                "ResultPath": "$.Chunks",
                "Next": "AssembleV2",
            },
            "AssembleV2": _ASSEMBLE,
        },
    }


# Runs in the server process when calls are counted: moto's own app behind a counting wrapper.
_COUNTING_SERVER = r"""
import io, json, os, re, signal, sys, threading
from collections import Counter
from urllib.parse import parse_qs
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
counts = Counter()
lock = threading.Lock()
app = DomainDispatcherApplication(create_backend_app)
scope = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")

def s3_action(method, path, query, environ):
    parts = path.lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and parts[1] != ""
    if has_key:
        if method == "PUT":
            if "partNumber" in query:
                return "UploadPart"
            return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
        if method == "POST":
            return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
        return {"HEAD": "HeadObject", "GET": "GetObject", "DELETE": "DeleteObject"}.get(
            method, method)
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
        method, method)

def counting(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/_hf/calls":
        with lock:
            body = json.dumps(dict(counts)).encode()
            if environ["REQUEST_METHOD"] == "DELETE":
                counts.clear()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    match = scope.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        service = match.group(1)
        method = environ["REQUEST_METHOD"]
        target = environ.get("HTTP_X_AMZ_TARGET")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if target:
            action = target.rsplit(".", 1)[-1]
        elif service == "s3":
            action = s3_action(method, path, query, environ)
        elif environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(size)
            environ["wsgi.input"] = io.BytesIO(body)
            action = parse_qs(body.decode()).get("Action", [method])[0]
        else:
            action = method
        with lock:
            counts[f"{service}:{action}"] += 1
    return app(environ, start_response)

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
run_simple(host, port, counting, threaded=True, request_handler=MotoRequestHandler)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoStack(Service):
    """A moto server process with a render bucket and the test state machine.

    Use as a context manager or call `start()`/`stop()`. Executions are really run by moto's ASL
    interpreter, in background threads of the server process.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        bucket: str = "hf-renders",
        state_machine_name: str = "hyperframes-render",
        timeout_seconds: int = 3600,
        count_calls: bool = False,
        startup_timeout_s: float = 30.0,
        instant: bool = False,
    ) -> None:
        self.region = region
        self.instant = instant
        self.bucket = bucket
        self.state_machine_name = state_machine_name
        self.timeout_seconds = timeout_seconds
        self.count_calls = count_calls
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.state_machine_arn = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("MotoStack is not started")
        return f"http://127.0.0.1:{self.port}"

    def _command(self, port: int) -> list[str]:
        if self.count_calls:
            return [sys.executable, "-c", _COUNTING_SERVER, "127.0.0.1", str(port)]
        moto_server = Path(sys.executable).with_name("moto_server")
        return [str(moto_server), "-H", "127.0.0.1", "-p", str(port)]

    def start(self) -> MotoStack:
        """Start the server on a free port, wait for it, then create the bucket and machine."""
        for _ in range(3):  # a free port can be taken between probing and binding: retry
            port = _free_port()
            log = Path(tempfile.gettempdir()) / f"moto-server-{port}.log"
            with open(log, "wb") as out:
                self._proc = subprocess.Popen(
                    self._command(port),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.port, self._log_path = port, log
            if self._wait_ready():
                break
            self.stop()
        else:
            raise RuntimeError(f"moto server did not start; see {self._log_path}")
        # Must precede every state machine: the executing backend is a separate store.
        self._post("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        s3 = self.boto3_client("s3")
        if self.region == "us-east-1":
            s3.create_bucket(Bucket=self.bucket)
        else:
            s3.create_bucket(
                Bucket=self.bucket,
                CreateBucketConfiguration={"LocationConstraint": self.region},
            )
        self.state_machine_arn = self.create_state_machine(
            self.state_machine_name, timeout_seconds=self.timeout_seconds
        )
        if self.count_calls:
            self.reset_calls()
        return self

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/config", timeout=1):
                    return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Terminate the server process (and its process group); safe to call twice.

        The server's log file is kept only when the server had already died (to read why).
        """
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        terminate_group(proc)
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)

    # -- clients and Airflow connection -------------------------------------------------------

    def boto3_client(self, service: str) -> Any:
        """A boto3 client for this server with the test credentials."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            **TEST_CREDENTIALS,
        )

    def airflow_conn_uri_or_json(
        self, conn_id: str = "hyperframes_default", *, with_stack: bool = True, **extra: Any
    ) -> str:
        """The `AIRFLOW_CONN_<ID>` JSON value of an `aws` connection to this stack.

        `with_stack=False` leaves out `bucket_name`/`state_machine_arn` (to test the other
        sources); `extra` adds or overrides extra keys (None removes one). `conn_id` only names
        the connection in the env var (see `airflow_conn_env`).
        """
        del conn_id
        fields: dict[str, Any] = {"region_name": self.region, "endpoint_url": self.endpoint_url}
        if with_stack:
            fields["bucket_name"] = self.bucket
            fields["state_machine_arn"] = self.state_machine_arn
        fields.update(extra)
        return json.dumps(
            {
                "conn_type": "aws",
                "login": TEST_CREDENTIALS["aws_access_key_id"],
                "password": TEST_CREDENTIALS["aws_secret_access_key"],
                "extra": {k: v for k, v in fields.items() if v is not None},
            }
        )

    def airflow_conn_env(
        self, conn_id: str = "hyperframes_default", *, with_stack: bool = True, **extra: Any
    ) -> dict[str, str]:
        """`{"AIRFLOW_CONN_<ID>": json}`, ready for `monkeypatch.setenv` or a subprocess env."""
        value = self.airflow_conn_uri_or_json(conn_id, with_stack=with_stack, **extra)
        return {f"AIRFLOW_CONN_{conn_id.upper()}": value}

    # -- more stack pieces ----------------------------------------------------------------------

    def create_state_machine(self, name: str, *, timeout_seconds: int = 3600) -> str:
        """Another test state machine (e.g. with a short `TimeoutSeconds` for TIMED_OUT)."""
        build = instant_stack_definition if self.instant else render_stack_definition
        definition = build(timeout_seconds=timeout_seconds)
        arn: str = self.boto3_client("stepfunctions").create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=TEST_ROLE_ARN, type="STANDARD"
        )["stateMachineArn"]
        return arn

    def create_cloudformation_stack(
        self, stack_name: str, outputs: dict[str, str], parameters: dict[str, str] | None = None
    ) -> None:
        """A CloudFormation stack whose only purpose is its Outputs (and Parameters)."""
        template: dict[str, Any] = {
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        params = parameters or {}
        if params:
            template["Parameters"] = {key: {"Type": "String"} for key in params}
        self.boto3_client("cloudformation").create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        )

    # -- call counting --------------------------------------------------------------------------

    def calls(self) -> Counter[str]:
        """Requests served since the last reset, by `<service>:<action>` (needs count_calls)."""
        return Counter(self._calls("GET"))

    def reset_calls(self) -> Counter[str]:
        """Return the counts and start again from zero."""
        return Counter(self._calls("DELETE"))

    def _calls(self, method: str) -> dict[str, int]:
        if not self.count_calls:
            raise RuntimeError("start the MotoStack with count_calls=True to count calls")
        request = urllib.request.Request(self.endpoint_url + "/_hf/calls", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            counts: dict[str, int] = json.loads(response.read())
            return counts

    @contextlib.contextmanager
    def enforce_iam(self) -> Iterator[None]:
        """Make moto check IAM for every request, so the test credentials get real 403s."""
        self._post("/moto-api/reset-auth", "0")
        try:
            yield
        finally:
            self._post("/moto-api/reset-auth", "inf")

    def _post(self, path: str, body: Any) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.endpoint_url + path,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def eventually(
    fetch: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 5.0
) -> Any:
    """Poll `fetch()` until `done(value)`: moto closes a stopped execution a moment after
    StopExecution returns (so may AWS), so a state read right after a stop can still say RUNNING."""
    deadline = time.monotonic() + timeout_s
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = fetch()
    return value
