"""`LambdaBackend.settle` against a real moto server: what collect_manifest learns about rows
whose tasks ended without recording them (a kill that outran `on_kill`, a lost triggerer).

The same executions are settled both ways the backend knows, one DescribeExecution per name
(few rows) and one listing of the run's executions (many rows), and both must tell the same
truth: each row's latest attempt, its result, and a stop for a render its task no longer
waits on. The listing must not cost a call per row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.moto_stack import MotoStack, eventually
from hyperframes_airflow.backends.lambda_ import DESCRIBE_UP_TO, LambdaBackend
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.execution import attempt_name
from hyperframes_airflow.contract.manifest import ManifestRow
from hyperframes_airflow.contract.plan import encode_row_input
from hyperframes_airflow.storage import read_planned_rows
from tests.aws.test_lambda_lane import SITE, Planned

ROWS = DESCRIBE_UP_TO + 10


def _start(planned: Planned, index: int, attempt: int = 1) -> str:
    """Start row `index`'s execution under its `attempt` name, as a lane would."""
    spec = planned.spec
    wire = RenderConfig.model_validate(spec.config).to_wire()
    (row,) = read_planned_rows(spec, [planned.lane.rows[index]], wire)
    name = attempt_name(planned.names[index], attempt)
    sfn = planned.stack.boto3_client("stepfunctions")
    sfn.start_execution(
        stateMachineArn=planned.stack.state_machine_arn,
        name=name,
        input=encode_row_input(
            base_wire=wire,
            bucket=planned.stack.bucket,
            site_id=SITE,
            row=row,  # type: ignore[arg-type]
            name=name,
        ),
    )
    return name


def _batch(moto: MotoStack, tmp_path: Path) -> Planned:
    """ROWS rows: 0-4 succeed, 5 fails (twice: attempt 2 is started by the test), 6-7 hang,
    the rest never start. Another run's execution of the same batch must be ignored."""
    fates = ["succeed"] * 5 + ["fail", "hang", "hang"] + ["succeed"] * (ROWS - 8)
    rows = [
        {"outputKey": f"settle/{i}.mp4", "variables": {"hfTestFate": fate, "secret": f"pii-{i}"}}
        for i, fate in enumerate(fates)
    ]
    planned = Planned(moto, tmp_path, rows)
    for index in range(8):
        _start(planned, index)
    other = Planned(moto, tmp_path, rows)  # a different run: names of its own
    _start(other, 0)
    return planned


def _settle(planned: Planned, since: datetime | None) -> dict[int, ManifestRow]:
    return LambdaBackend().settle(
        planned.spec,
        [(ref, "failed") for ref in planned.lane.rows],
        dag_id="lane_test",
        run_id=planned.run_id,
        since=since,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["listing", "describing"])
def test_settle_finds_each_rows_latest_render_and_stops_the_orphans(
    moto: MotoStack, tmp_path: Path, how: str
) -> None:
    began = datetime.now(UTC) - timedelta(minutes=1)
    planned = _batch(moto, tmp_path)
    eventually(lambda: planned.status(planned.names[5]), lambda s: s == "FAILED", 20)
    second = _start_attempt_two(planned)
    eventually(lambda: planned.status(second), lambda s: s == "FAILED", 20)
    moto.reset_calls()

    settled = _settle(planned, began if how == "listing" else None)

    calls = moto.calls()
    lines = [ref.line for ref in planned.lane.rows]
    assert sorted(settled) == lines[:8], "only the rows that started have a result"
    statuses = [settled[line].status for line in lines[:8]]
    assert statuses == ["succeeded"] * 5 + ["failed"] + ["aborted"] * 2
    assert settled[lines[5]].attempt == 2
    assert settled[lines[5]].execution_name == second
    # The hanging renders' tasks are failed: nothing waits on them any more, so they stop.
    assert planned.status(planned.names[6]) == "ABORTED"
    assert planned.status(planned.names[7]) == "ABORTED"
    assert all("pii-" not in row.model_dump_json() for row in settled.values())
    if how == "listing":
        assert calls["states:ListExecutions"] >= 1
        # Describes only for the two stops (before and after each), never one per row.
        assert calls["states:DescribeExecution"] <= 2 * 3
    else:
        assert calls["states:ListExecutions"] == 0
        assert calls["states:DescribeExecution"] >= ROWS


def _start_attempt_two(planned: Planned) -> str:
    return _start(planned, 5, attempt=2)


@pytest.mark.timeout(60)
def test_listing_ignores_renders_started_before_the_run(moto: MotoStack, tmp_path: Path) -> None:
    planned = _batch(moto, tmp_path)
    eventually(lambda: planned.status(planned.names[0]), lambda s: s == "SUCCEEDED", 20)
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert _settle(planned, later) == {}
