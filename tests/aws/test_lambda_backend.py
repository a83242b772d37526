"""LambdaBackend against a real moto server: deploy once, exact input, exactly-once starts."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hyperframes_airflow.backends import make_backend
from hyperframes_airflow.backends.base import RenderJob
from hyperframes_airflow.backends.lambda_ import STOP_ERROR, LambdaBackend, StartOutcome
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.execution import ExecutionInputTooLarge
from hyperframes_airflow.contract.site import site_id
from devstack.moto_stack import MOCK_FILE_SIZE, MOCK_FRAMES, MotoStack

JS_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
CONFIG = RenderConfig(width=640, height=360, fps=30).to_wire()


@pytest.fixture
def backend(hf_conn: MotoStack) -> Iterator[LambdaBackend]:
    backend = LambdaBackend()
    yield backend
    # Leave no hanging render behind in the shared server.
    for execution in backend.hook.list_executions("RUNNING"):
        backend.stop(execution["executionArn"], cause="test teardown")


def _job(**variables: Any) -> RenderJob:
    token = uuid.uuid4().hex[:12]
    return RenderJob(
        input_line=3,
        output_key=f"out/{token}.mp4",
        execution_name=f"hf-test-{token}",
        site_id="0123456789abcdef",
        config=CONFIG,
        variables=variables,
    )


def _wait(backend: LambdaBackend, outcome: StartOutcome) -> dict[str, Any]:
    return backend.wait_until_closed(outcome.execution_arn, poll_interval_s=0.05, timeout_s=10)


def _executions_named(backend: LambdaBackend, prefix: str) -> list[str]:
    listed = backend.hook.list_executions(status_filter=None)
    return sorted(e["name"] for e in listed if e["name"].startswith(prefix))


# -- the RenderBackend surface --------------------------------------------------------------


def test_make_backend_builds_a_lambda_backend_from_the_connection(hf_conn: MotoStack) -> None:
    backend = make_backend("lambda", conn_id="hyperframes_default")
    assert isinstance(backend, LambdaBackend)
    assert backend.kind == "lambda"
    assert backend.bucket_name == hf_conn.bucket
    assert backend.state_machine_arn == hf_conn.state_machine_arn
    assert (backend.region, backend.lambda_memory_mb) == (hf_conn.region, 10240)
    assert backend.output_uri("out/a b.mp4") == f"s3://{hf_conn.bucket}/out/a b.mp4"
    assert backend.default_manifest_uri("my dag", "manual__2026-11-29T10:00:00+00:00") == (
        f"s3://{hf_conn.bucket}/manifests/my_dag/manual__2026-11-29T10_00_00_00_00.json"
    )


def test_deploy_site_uploads_once(
    hf_conn: MotoStack, backend: LambdaBackend, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "index.html").write_text(f"<html><!-- {uuid.uuid4()} --></html>\n")
    sid = site_id(project)
    key = f"sites/{sid}/project.tar.gz"

    hf_conn.reset_calls()
    first = backend.deploy_site(project, sid)
    assert (first.uploaded, first.project_uri) == (True, f"s3://{hf_conn.bucket}/{key}")
    assert hf_conn.reset_calls() == {"s3:HeadObject": 1, "s3:PutObject": 1}
    s3 = hf_conn.boto3_client("s3")
    modified = s3.head_object(Bucket=hf_conn.bucket, Key=key)["LastModified"]

    hf_conn.reset_calls()
    second = backend.deploy_site(project, sid)
    assert hf_conn.reset_calls() == {"s3:HeadObject": 1}  # no upload the second time
    assert second.uploaded is False
    assert second.bytes == first.bytes > 0
    assert s3.head_object(Bucket=hf_conn.bucket, Key=key)["LastModified"] == modified


# -- the execution input ----------------------------------------------------------------------


def test_the_input_on_the_wire_is_exactly_the_node_sdks(
    hf_conn: MotoStack, backend: LambdaBackend
) -> None:
    job = _job(title="Hi Ädä ✓", n=2.0, nested={"list": [1, 2.5]}, hfTestFate="hang")
    outcome = backend.ensure_started(job)
    bucket, name = hf_conn.bucket, job.execution_name
    expected = (
        f'{{"ProjectS3Uri":"s3://{bucket}/sites/0123456789abcdef/project.tar.gz",'
        f'"PlanOutputS3Prefix":"s3://{bucket}/renders/{name}/",'
        f'"OutputS3Uri":"s3://{bucket}/{job.output_key}",'
        '"Config":{"fps":30,"width":640,"height":360,"format":"mp4","runtimeCap":"lambda",'
        '"variables":{"title":"Hi Ädä ✓","n":2,"nested":{"list":[1,2.5]},"hfTestFate":"hang"}},'
        '"PlanProtocol":"v2"}'
    )
    describe = backend.describe(outcome.execution_arn)
    assert describe is not None
    assert describe["input"] == expected
    assert describe["input"].encode("utf-8") == expected.encode("utf-8")


def test_rows_without_variables_send_no_variables_key(backend: LambdaBackend) -> None:
    encoded = backend.execution_input(_job())
    assert '"runtimeCap":"lambda"},"PlanProtocol":"v2"}' in encoded
    assert "variables" not in encoded


def test_config_key_order_is_restored(backend: LambdaBackend) -> None:
    job = _job(title="x")
    shuffled = RenderJob(**{**job.__dict__, "config": dict(reversed(list(CONFIG.items())))})
    assert backend.execution_input(shuffled) == backend.execution_input(job)


def test_oversized_input_is_refused_before_any_call(
    hf_conn: MotoStack, backend: LambdaBackend
) -> None:
    job = _job(blob="x" * 262_144)
    hf_conn.reset_calls()
    with pytest.raises(ExecutionInputTooLarge, match="exceeds the 262144-byte"):
        backend.ensure_started(job)
    assert hf_conn.reset_calls() == {}


# -- exactly once -----------------------------------------------------------------------------


def test_a_running_render_is_reattached_not_duplicated(
    hf_conn: MotoStack, backend: LambdaBackend
) -> None:
    job = _job(hfTestFate="hang")
    hf_conn.reset_calls()
    first = backend.ensure_started(job)
    assert (first.started, first.attempt, first.execution_name) == (True, 1, job.execution_name)
    assert first.describe is None
    assert hf_conn.reset_calls() == {
        "states:DescribeExecution": 1,
        "states:StartExecution": 1,
    }

    again = backend.ensure_started(job)
    assert (again.reattached, again.started) == (True, False)
    assert again.execution_arn == first.execution_arn
    assert again.describe is not None and again.describe["status"] == "RUNNING"
    assert hf_conn.reset_calls() == {"states:DescribeExecution": 1}
    assert _executions_named(backend, job.execution_name) == [job.execution_name]


def test_a_failed_render_is_started_again_under_the_next_attempt_name(
    backend: LambdaBackend,
) -> None:
    job = _job(hfTestFate="fail")
    first = backend.ensure_started(job)
    assert _wait(backend, first)["status"] == "FAILED"

    second = backend.ensure_started(job)
    assert (second.started, second.attempt) == (True, 2)
    assert second.execution_name == f"{job.execution_name}-a2"
    assert second.passed_over == ((job.execution_name, "FAILED"),)
    describe = backend.describe(second.execution_arn)
    assert describe is not None
    assert f"/renders/{job.execution_name}-a2/" in describe["input"]  # own PlanOutputS3Prefix


def test_a_succeeded_render_is_returned_unless_forced(backend: LambdaBackend) -> None:
    job = _job()
    first = backend.ensure_started(job)
    assert _wait(backend, first)["status"] == "SUCCEEDED"

    done = backend.ensure_started(job)
    assert (done.already_succeeded, done.started, done.attempt) == (True, False, 1)
    assert done.describe is not None and done.describe["status"] == "SUCCEEDED"
    row = backend.collect_result(job, done)
    assert (row["status"], row["attempt"]) == ("succeeded", 1)

    forced = backend.ensure_started(job, force_rerender=True)
    assert (forced.started, forced.attempt) == (True, 2)
    assert _executions_named(backend, job.execution_name) == [
        job.execution_name,
        f"{job.execution_name}-a2",
    ]


def test_an_execution_with_another_input_is_never_adopted(
    hf_conn: MotoStack, backend: LambdaBackend
) -> None:
    job = _job(hfTestFate="hang")
    backend.hook.start_execution(
        job.execution_name, '{"Config":{"variables":{"hfTestFate":"hang"}}}'
    )
    outcome = backend.ensure_started(job)
    assert (outcome.started, outcome.attempt) == (True, 2)
    assert outcome.passed_over == ((job.execution_name, "RUNNING (different input)"),)


def test_a_lost_start_race_is_resolved_by_describing_again(
    backend: LambdaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(hfTestFate="fail")
    failed = backend.ensure_started(job)
    _wait(backend, failed)
    # The first DescribeExecution misses it (as if another worker started it just then):
    # StartExecution then answers ExecutionAlreadyExists, and the backend looks again.
    real = backend.hook.describe_execution
    misses = iter([True])
    monkeypatch.setattr(
        backend.hook,
        "describe_execution",
        lambda arn: None if next(misses, False) else real(arn),
    )
    outcome = backend.ensure_started(job)
    assert (outcome.started, outcome.attempt) == (True, 2)


# -- stop -----------------------------------------------------------------------------------


def test_stop_is_idempotent(hf_conn: MotoStack, backend: LambdaBackend) -> None:
    outcome = backend.ensure_started(_job(hfTestFate="hang"))
    assert backend.stop(outcome.execution_arn, cause="task killed") is True
    # moto closes the execution a moment after StopExecution returns (AWS may too): once it
    # reads ABORTED, stopping again is a no-op that reports it did nothing.
    deadline = time.monotonic() + 5
    while backend.status(outcome.execution_arn) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.stop(outcome.execution_arn, cause="task killed") is False
    missing = backend.execution_arn("hf-test-never-started")
    assert backend.stop(missing) is False
    describe = backend.describe(outcome.execution_arn)
    assert describe is not None and describe["status"] == "ABORTED"


# -- manifest rows ----------------------------------------------------------------------------


def _finished_row(backend: LambdaBackend, job: RenderJob, outcome: StartOutcome) -> dict[str, Any]:
    describe = _wait(backend, outcome)
    history = backend.history(outcome.execution_arn)
    return backend.result_row(
        job, outcome.execution_name, outcome.execution_arn, outcome.attempt, describe, history
    )


def test_result_row_of_a_success(hf_conn: MotoStack, backend: LambdaBackend) -> None:
    job = _job(title="Ada")
    outcome = backend.ensure_started(job)
    row = _finished_row(backend, job, outcome)
    assert row["status"] == "succeeded"
    assert row["outputUri"] == f"s3://{hf_conn.bucket}/{job.output_key}"
    assert (row["bytes"], row["frames"]) == (MOCK_FILE_SIZE, MOCK_FRAMES)
    assert (row["inputLine"], row["outputKey"], row["attempt"]) == (3, job.output_key, 1)
    assert (row["executionName"], row["executionArn"]) == (
        outcome.execution_name,
        outcome.execution_arn,
    )
    assert row["costUsd"] == 0.0002  # 9 transitions x $0.000025, rounded like the SDK
    assert JS_ISO.fullmatch(row["startedAt"]) and JS_ISO.fullmatch(row["endedAt"])
    assert row["error"] is None and row["cause"] is None
    assert "variables" not in row and "Ada" not in str(row)  # personal data stays out


def test_result_row_of_a_failure(backend: LambdaBackend) -> None:
    job = _job(hfTestFate="fail")
    row = _finished_row(backend, job, backend.ensure_started(job))
    assert row["status"] == "failed"
    assert row["error"] == "FONT_FETCH_FAILED"
    assert row["cause"] == 'FONT_FETCH_FAILED: could not fetch font "Inter" (moto test stack)'
    assert row["outputUri"] is None and row["bytes"] is None
    assert row["costUsd"] is not None


def test_result_row_without_history_uses_describe(backend: LambdaBackend) -> None:
    job = _job(hfTestFate="fail", hfTestError="S3_URI_NOT_ALLOWED")
    outcome = backend.ensure_started(job)
    describe = _wait(backend, outcome)
    row = backend.result_row(job, outcome.execution_name, outcome.execution_arn, 1, describe, [])
    assert (row["status"], row["error"]) == ("failed", "S3_URI_NOT_ALLOWED")
    assert row["cause"] is not None and row["cause"].startswith("FONT_FETCH_FAILED:")


def test_result_row_of_an_aborted_render(backend: LambdaBackend) -> None:
    job = _job(hfTestFate="hang")
    outcome = backend.ensure_started(job)
    backend.stop(outcome.execution_arn, cause="marked failed in the UI")
    row = _finished_row(backend, job, outcome)
    assert row["status"] == "aborted"
    # AWS records the stop's error; moto records "" and the row falls back to the status.
    assert row["error"] in {STOP_ERROR, "ABORTED"}
    assert row["endedAt"] is not None


def test_result_row_of_a_timed_out_render(
    hf_conn: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = hf_conn.create_state_machine(f"short-{uuid.uuid4().hex[:8]}", timeout_seconds=1)
    for key, value in hf_conn.airflow_conn_env("hf_short", state_machine_arn=short).items():
        monkeypatch.setenv(key, value)
    backend = LambdaBackend("hf_short")
    job = _job(hfTestFate="hang")
    row = _finished_row(backend, job, backend.ensure_started(job))
    assert (row["status"], row["error"]) == ("timed-out", "TIMEOUT")


def test_result_row_refuses_a_running_execution(backend: LambdaBackend) -> None:
    job = _job(hfTestFate="hang")
    outcome = backend.ensure_started(job)
    describe = backend.describe(outcome.execution_arn)
    assert describe is not None
    with pytest.raises(ValueError, match="has not finished"):
        backend.result_row(job, outcome.execution_name, outcome.execution_arn, 1, describe, [])


def test_failed_to_start_row() -> None:
    job = _job()
    row = LambdaBackend.failed_to_start_row(job, "StateMachineDoesNotExist", "no such machine")
    assert row["status"] == "failed-to-start"
    assert (row["executionName"], row["error"]) == (job.execution_name, "StateMachineDoesNotExist")
    assert row["executionArn"] is None


def test_execution_record_helpers_for_the_operator(backend: LambdaBackend) -> None:
    job = _job(hfTestFate="fail")
    outcome = backend.ensure_started(job)
    _wait(backend, outcome)
    assert backend.status(outcome.execution_arn) == "FAILED"
    assert backend.status(backend.execution_arn("hf-test-never-started")) is None
    execution = {
        "line": job.input_line,
        "outputKey": job.output_key,
        "outputUri": backend.output_uri(job.output_key),
        "executionName": outcome.execution_name,
        "executionArn": outcome.execution_arn,
        "attempt": outcome.attempt,
    }
    row = backend.completed_row(execution)
    assert row == _finished_row(backend, job, outcome)
    assert (row["status"], row["error"]) == ("failed", "FONT_FETCH_FAILED")
