"""The whole batch flow through real Airflow (`dag.test()`) against a real moto server.

moto stands in for the HyperFrames Lambda stack (no AWS account here): its state machine mimics
the HyperFrames topology and lets each row's variables choose its fate (devstack/moto_stack.py).
The trigger runs inline under dag.test(); its aiobotocore client talks HTTP to moto.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack.moto_stack import MotoStack
from tests.airflow_helpers import run_dag, ti_states
from tests.conftest import REPO

TEMPLATE = REPO / "examples" / "templates" / "welcome"


def _dag(dag_id: str, batch: str, *, backend: str = "lambda", **options: Any) -> Any:
    from airflow.sdk import DAG

    from hyperframes_airflow.batch import render_batch
    from hyperframes_airflow.contract.config import RenderConfig

    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        render_batch(
            project_dir=str(TEMPLATE),
            batch=batch,
            config=RenderConfig(width=640, height=360, fps=30),
            backend=backend,
            poll_interval=0.3,
            **options,
        )
    return dag


def _put_batch(stack: MotoStack, key: str, rows: list[dict[str, Any] | str]) -> str:
    body = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    stack.boto3_client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body.encode())
    return f"s3://{stack.bucket}/{key}"


def _manifest(stack: MotoStack, dag_id: str) -> dict[str, Any]:
    s3 = stack.boto3_client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"manifests/{dag_id}/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert len(keys) == 1, keys
    data: dict[str, Any] = json.loads(
        s3.get_object(Bucket=stack.bucket, Key=keys[0])["Body"].read()
    )
    return data


@pytest.mark.slow
@pytest.mark.timeout(300)
def _file_holds(path: Path, text: str) -> bool:
    """Whether `path`'s bytes contain `text`, read by another process: closing a descriptor of
    the metadata DB in this one would drop the POSIX locks SQLite holds here, and a later
    process closing the DB would then delete the WAL under this process's open connections."""
    probe = "import sys; p, t = sys.argv[1:]; print(int(t.encode() in open(p, 'rb').read()))"
    if not path.exists():
        return False
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path), text], check=True, capture_output=True, text=True
    )
    return done.stdout.strip() == "1"


def test_each_row_gets_its_own_fate_and_the_manifest_tells_all(hf_conn: MotoStack) -> None:
    stack = hf_conn
    batch = _put_batch(
        stack,
        "batches/mixed.jsonl",
        [
            {"outputKey": "out/ok.mp4", "variables": {"title": "Hi Ada"}},
            {"outputKey": "out/slow.mp4", "variables": {"hfTestSeconds": 2}},
            {"outputKey": "out/boom.mp4", "variables": {"hfTestFate": "fail"}},
            {"outputKey": "sites/nope.mp4"},
        ],
    )
    stack.reset_calls()
    run = run_dag(_dag("hf_lambda_mixed", batch, strict=False))

    assert str(run.state) == "failed"  # a row failed, so the run says so
    manifest = _manifest(stack, "hf_lambda_mixed")
    rows = {r["inputLine"]: r for r in manifest["rows"]}
    assert [rows[i]["status"] for i in (1, 2, 3, 4)] == [
        "succeeded",
        "succeeded",
        "failed",
        "invalid",
    ]
    assert rows[1]["outputUri"] == f"s3://{stack.bucket}/out/ok.mp4"
    assert rows[1]["frames"] == 60 and rows[1]["bytes"] == 4096
    assert rows[1]["executionArn"].endswith(":" + rows[1]["executionName"])
    assert rows[3]["error"] == "FONT_FETCH_FAILED"
    assert manifest["siteId"] and manifest["estimate"]["rows"] == 3
    assert "Hi Ada" not in json.dumps(manifest)  # variables are personal data

    # The exact Node input went on the wire, with the site deployed once.
    sfn = stack.boto3_client("stepfunctions")
    described = sfn.describe_execution(executionArn=rows[1]["executionArn"])
    sent = json.loads(described["input"])
    assert list(sent) == [
        "ProjectS3Uri",
        "PlanOutputS3Prefix",
        "OutputS3Uri",
        "Config",
        "PlanProtocol",
    ]
    assert sent["ProjectS3Uri"] == f"s3://{stack.bucket}/sites/{manifest['siteId']}/project.tar.gz"
    assert sent["Config"] == {
        "fps": 30,
        "width": 640,
        "height": 360,
        "format": "mp4",
        "runtimeCap": "lambda",
        "variables": {"title": "Hi Ada"},
    }
    assert described["input"] == json.dumps(sent, separators=(",", ":"), ensure_ascii=False)
    calls = stack.calls()
    assert calls["s3:PutObject"] == 2  # the site tarball and the manifest
    assert calls["states:StartExecution"] == 3  # one per valid row, none for the invalid one
    states = ti_states(run)
    assert states[("render_batch.render", 0)] == "success"
    assert states[("render_batch.render", 2)] == "failed"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dry_run_and_cost_gate_start_nothing(hf_conn: MotoStack) -> None:
    stack = hf_conn
    batch = _put_batch(stack, "batches/two.jsonl", [{"outputKey": "a.mp4"}, {"outputKey": "b.mp4"}])
    stack.reset_calls()
    dry = run_dag(_dag("hf_lambda_dry", batch, dry_run=True))
    assert str(dry.state) == "success"
    assert [r["status"] for r in _manifest(stack, "hf_lambda_dry")["rows"]] == ["would-invoke"] * 2

    gated = run_dag(_dag("hf_lambda_gate", batch, max_cost_usd=0.0001))
    assert str(gated.state) == "failed"
    manifest = _manifest(stack, "hf_lambda_gate")
    gate = [p for p in manifest["problems"] if p["field"] == "max_cost_usd"]
    assert gate and "confirm_cost" in gate[0]["message"] and "$0.0001" in gate[0]["message"]
    assert [r["status"] for r in manifest["rows"]] == ["skipped", "skipped"]
    calls = stack.calls()
    assert calls["states:StartExecution"] == 0
    assert calls["s3:PutObject"] == 2  # the two manifests, no site

    confirmed = run_dag(_dag("hf_lambda_confirmed", batch, max_cost_usd=0.0001, confirm_cost=True))
    assert str(confirmed.state) == "success"
    assert manifest["estimate"]["totalUsd"] > 0.0001


def _xcom(run: Any, task_id: str, key: str, map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        found = (
            session.query(XComModel)
            .filter_by(
                dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key, map_index=map_index
            )
            .one_or_none()
        )
        return None if found is None else found.value


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_personal_data_never_reaches_airflow(
    hf_conn: MotoStack, capfd: pytest.CaptureFixture[str]
) -> None:
    """Variables are read back from the batch by the render itself: no XCom, rendered field,
    trigger kwargs, task log or manifest ever holds one, not even in a failed row's cause."""
    from airflow.configuration import conf

    stack = hf_conn
    # Made at run time: the DAG's own source (this module) is stored in the DB too.
    secret = f"Ada-{uuid.uuid4().hex}"
    rows: list[dict[str, Any] | str] = [
        {"outputKey": "pii/a.mp4", "variables": {"title": secret, "notes": "n" * 6000}},
        {"outputKey": "pii/b.mp4", "variables": {"title": secret, "hfTestFate": "fail"}},
    ]
    batch = _put_batch(stack, "batches/pii.jsonl", rows)
    run = run_dag(_dag("hf_lambda_pii", batch, strict=False))
    assert str(run.state) == "failed"  # line 2 failed on purpose

    manifest = _manifest(stack, "hf_lambda_pii")
    assert [r["status"] for r in manifest["rows"]] == ["succeeded", "failed"]
    assert secret not in json.dumps(manifest)
    # The whole metadata database: XComs, rendered fields, task instances, triggers.
    db = Path(conf.get("database", "sql_alchemy_conn").removeprefix("sqlite:///"))
    assert not _file_holds(db, secret) and not _file_holds(Path(f"{db}-wal"), secret)
    assert secret not in capfd.readouterr().out  # the task logs (dag.test prints them)
    mapping = _xcom(run, "render_batch.prepare_batch", "return_value")
    assert mapping == [{"label": "pii/a.mp4"}, {"label": "pii/b.mp4"}]
    lanes = [_xcom(run, "render_batch.prepare_batch", f"lane.{i}") for i in (0, 1)]
    assert lanes == [
        [
            {
                "line": 1,
                "offset": 0,
                "digest": lanes[0][0]["digest"],
                "outputKey": "pii/a.mp4",
            }
        ],
        [
            {
                "line": 2,
                "offset": len(json.dumps(rows[0])) + 1,
                "digest": lanes[1][0]["digest"],
                "outputKey": "pii/b.mp4",
            }
        ],
    ]
    # The execution itself received exactly the row's variables, read from the batch file.
    arn = manifest["rows"][0]["executionArn"]
    sent = json.loads(
        stack.boto3_client("stepfunctions").describe_execution(executionArn=arn)["input"]
    )
    assert sent["Config"]["variables"] == rows[0]["variables"]  # type: ignore[index]
    # The console links: the state machine (from the worker) and the execution (the trigger).
    link = _xcom(run, "render_batch.render", "_state_machine_executions_details", 0)
    assert link["execution_arn"] == arn and link["region_name"] == stack.region
    machine = _xcom(run, "render_batch.render", "_state_machine_details", 0)
    assert machine["state_machine_arn"] == stack.state_machine_arn


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_batch_edited_after_prepare_fails_the_changed_row_only(hf_conn: MotoStack) -> None:
    """A row re-read by its render no longer matches what prepare planned: that row fails
    clearly (nobody's variables are rendered in its place); the others render."""
    from airflow.sdk import DAG

    from hyperframes_airflow.batch import render_batch
    from hyperframes_airflow.contract.config import RenderConfig
    from hyperframes_airflow.operators.prepare import HyperframesPrepareBatchOperator

    stack = hf_conn
    rows: list[dict[str, Any] | str] = [
        {"outputKey": "edit/a.mp4", "variables": {"title": "A"}},
        {"outputKey": "edit/b.mp4", "variables": {"title": "B"}},
    ]
    batch = _put_batch(stack, "batches/edited.jsonl", rows)
    edited = [rows[0], {"outputKey": "edit/b.mp4", "variables": {"title": "Someone else"}}]

    class EditAfterPrepare(HyperframesPrepareBatchOperator):
        def execute(self, context: Any) -> Any:
            lanes = super().execute(context)
            _put_batch(stack, "batches/edited.jsonl", edited)  # same length, other person
            return lanes

    with DAG(dag_id="hf_lambda_edited", schedule=None, catchup=False) as dag:
        import hyperframes_airflow.batch as factory

        original = factory.HyperframesPrepareBatchOperator
        factory.HyperframesPrepareBatchOperator = EditAfterPrepare  # type: ignore[misc]
        try:
            render_batch(
                project_dir=str(TEMPLATE),
                batch=batch,
                config=RenderConfig(width=640, height=360, fps=30),
                backend="lambda",
                poll_interval=0.3,
            )
        finally:
            factory.HyperframesPrepareBatchOperator = original  # type: ignore[misc]
    stack.reset_calls()
    run = run_dag(dag)
    assert str(run.state) == "failed"
    manifest = _manifest(stack, "hf_lambda_edited")
    by_line = {r["inputLine"]: r for r in manifest["rows"]}
    assert by_line[1]["status"] == "succeeded"
    assert by_line[2]["status"] == "failed-to-start" and by_line[2]["error"] == "ROW_CHANGED"
    assert "changed since prepare_batch" in by_line[2]["cause"]
    assert stack.calls()["states:StartExecution"] == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_more_rows_than_airflow_maps_share_tasks_one_render_at_a_time(
    hf_conn: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above `[core] max_map_length` each render task takes consecutive rows in turn (here the
    limit is lowered to 3 so 7 rows need 3 tasks); the manifest still has one row per line."""
    stack = hf_conn
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    rows: list[dict[str, Any] | str] = [
        {"outputKey": f"chunk/{i}.mp4", "variables": {"title": f"T{i}"}} for i in range(7)
    ]
    rows[1] = {"outputKey": "chunk/1.mp4", "variables": {"hfTestFate": "fail"}}
    batch = _put_batch(stack, "batches/chunked.jsonl", rows)
    stack.reset_calls()
    run = run_dag(_dag("hf_lambda_chunked", batch))

    assert str(run.state) == "failed"
    manifest = _manifest(stack, "hf_lambda_chunked")
    statuses = [r["status"] for r in manifest["rows"]]
    assert statuses == ["succeeded", "failed", *["succeeded"] * 5]
    assert [r["inputLine"] for r in manifest["rows"]] == list(range(1, 8))
    assert stack.calls()["states:StartExecution"] == 7  # exactly one render per row
    states = ti_states(run)
    render = {k[1]: v for k, v in states.items() if k[0] == "render_batch.render"}
    assert render == {0: "failed", 1: "success", 2: "success"}  # the failure stays in its task
    assert _xcom(run, "render_batch.render", "return_value", 1)[0]["inputLine"] == 4


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wide_tasks_render_several_rows_at_once_each_once(hf_conn: MotoStack) -> None:
    """`renders_per_task=2`: 5 rows in 3 tasks (2 rows each, then 1), each task holding 2 pool
    slots; every row rendered once, the manifest in batch order."""
    stack = hf_conn
    rows: list[dict[str, Any] | str] = [{"outputKey": f"wide/{i}.mp4"} for i in range(5)]
    rows[3] = {"outputKey": "wide/3.mp4", "variables": {"hfTestFate": "fail"}}
    batch = _put_batch(stack, "batches/wide.jsonl", rows)
    stack.reset_calls()
    dag = _dag("hf_lambda_wide", batch, renders_per_task=2, max_concurrent=4)
    render = dag.get_task("render_batch.render")
    assert (render.partial_kwargs["pool_slots"], render.max_active_tis_per_dagrun) == (2, 2)
    run = run_dag(dag)

    assert str(run.state) == "failed"
    manifest = _manifest(stack, "hf_lambda_wide")
    assert [r["inputLine"] for r in manifest["rows"]] == [1, 2, 3, 4, 5]
    assert [r["status"] for r in manifest["rows"]] == [
        *["succeeded"] * 3,
        "failed",
        "succeeded",
    ]
    assert stack.calls()["states:StartExecution"] == 5
    states = ti_states(run)
    render_states = {k[1]: v for k, v in states.items() if k[0] == "render_batch.render"}
    assert render_states == {0: "success", 1: "failed", 2: "success"}


def test_renders_per_task_is_refused_where_a_task_cannot_hold_them() -> None:
    with pytest.raises(ValueError, match="renders_per_task is for backend='lambda'"):
        _dag("hf_wide_local", "rows.jsonl", backend="local", renders_per_task=2)
    with pytest.raises(ValueError, match=r"rows_per_task \(2\) must be >= renders_per_task"):
        _dag("hf_wide_rows", "rows.jsonl", renders_per_task=4, rows_per_task=2, max_concurrent=8)
    with pytest.raises(ValueError, match=r"max_concurrent \(2\) must be >= renders_per_task"):
        _dag("hf_wide_cap", "rows.jsonl", renders_per_task=4)
    with pytest.raises(ValueError, match="renders_per_task must be >= 1"):
        _dag("hf_wide_zero", "rows.jsonl", renders_per_task=0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ten_thousand_rows_fit_in_a_mapping_airflow_accepts(tmp_path: Path) -> None:
    """prepare_batch on a 10,000-row batch: every row planned, at most max_map_length (1024)
    render tasks, each with its own small lane XCom. Runs the real operator in a real DAG run
    (dag.test)."""
    from airflow.sdk import DAG

    from hyperframes_airflow.contract.config import RenderConfig
    from hyperframes_airflow.operators.prepare import HyperframesPrepareBatchOperator

    batch = tmp_path / "big.jsonl"
    with batch.open("w") as fh:
        for i in range(10_000):
            fh.write(json.dumps({"outputKey": f"v/{i}.mp4", "variables": {"name": f"N{i}"}}) + "\n")
    with DAG(dag_id="hf_prepare_10k", schedule=None) as dag:
        HyperframesPrepareBatchOperator(
            task_id="prepare_batch",
            project_dir=str(TEMPLATE),
            batch=str(batch),
            config=RenderConfig(width=640, height=360, fps=30),
            backend="local",
            local_root=str(tmp_path / "root"),
        )
    run = run_dag(dag)
    assert str(run.state) == "success"
    mapping = _xcom(run, "prepare_batch", "return_value")
    assert len(mapping) <= 1024
    # What every render task reads whole is its grid label alone, not the batch's plan.
    assert len(json.dumps(mapping, separators=(",", ":"))) / len(mapping) < 40
    lanes = [_xcom(run, "prepare_batch", f"lane.{i}") for i in range(len(mapping))]
    lines = [row["line"] for lane in lanes for row in lane]
    assert lines == list(range(1, 10_001))
    # Per row: its line, byte offset, a 16-hex digest and its output key; nothing batch-wide.
    assert set(lanes[0][0]) == {"line", "offset", "digest", "outputKey"}
    per_row = sum(len(json.dumps(lane, separators=(",", ":"))) for lane in lanes) / 10_000
    assert per_row < 100, per_row
    report = _xcom(run, "prepare_batch", "report")
    assert report["status"] == "planned" and not report["planned"]  # the rows are the lanes
    assert len(json.dumps(report)) < 10_000
