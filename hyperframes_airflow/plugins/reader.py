"""What a DAG run's render_batch groups left in the metadata DB, as `contract.page` inputs.

Runs in the api-server (the batch view's endpoints): a few queries per poll, whatever the
batch size: every XCom of the run the page needs in one query, every task instance in another.
A run may hold several groups; each is found by its prepare_batch task's `report` XCom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.providers.amazon.aws.links.step_function import StateMachineExecutionsDetailsLink
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hyperframes_airflow.contract.approval import Approval
from hyperframes_airflow.contract.page import BatchInputs, LiveRender, TaskView
from hyperframes_airflow.contract.rows import BatchReport, BatchSpec, decode_rows
from hyperframes_airflow.xcom import (
    APPROVAL_KEY,
    LANE_KEY_PREFIX,
    MANIFEST_KEY,
    PROGRESS_KEY,
    REPORT_KEY,
    RESULT_KEY,
    SPEC_KEY,
    lane_index,
)

__all__ = ["PREPARE", "GroupTasks", "RunData", "read_run", "recent_batches"]

PREPARE = "prepare_batch"
LINK_KEY = StateMachineExecutionsDetailsLink.key
#: The tasks of a render_batch group whose XComs the page reads (by their names in the group).
APPROVE, RENDER, COLLECT = "approve_cost", "render", "collect_manifest"
_GROUP_TASKS = (PREPARE, APPROVE, RENDER, COLLECT)
_KEYS = (REPORT_KEY, SPEC_KEY, RESULT_KEY, PROGRESS_KEY, LINK_KEY, APPROVAL_KEY, MANIFEST_KEY)


@dataclass(frozen=True)
class GroupTasks:
    """The task ids of one render_batch group."""

    group_id: str
    prefix: str

    @property
    def prepare(self) -> str:
        return f"{self.prefix}{PREPARE}"

    @property
    def approval(self) -> str:
        return f"{self.prefix}{APPROVE}"

    @property
    def render(self) -> str:
        return f"{self.prefix}{RENDER}"

    @property
    def collect(self) -> str:
        return f"{self.prefix}{COLLECT}"

    @classmethod
    def of_prepare(cls, task_id: str) -> GroupTasks:
        prefix = task_id[: -len(PREPARE)]
        return cls(group_id=prefix.rstrip(".") or "-", prefix=prefix)


@dataclass(frozen=True)
class RunData:
    """One run: its state and, per group, the page inputs (`arns`: Lambda renders running
    now, by map index, whose progress the caller may read from Step Functions)."""

    run_state: str | None
    groups: list[tuple[GroupTasks, BatchInputs, dict[int, str]]]


def _view(row: Any) -> TaskView:
    state = row.state
    return TaskView(
        state=str(getattr(state, "value", state)) if state is not None else None,
        start_date=row.start_date,
        end_date=row.end_date,
        try_number=int(row.try_number or 0),
        pool_slots=int(row.pool_slots or 1),
    )


def _xcoms(session: Session, dag_id: str, run_id: str) -> dict[tuple[str, str, int], Any]:
    from airflow.models.xcom import XComModel

    own_tasks = or_(
        *(
            or_(XComModel.task_id == name, XComModel.task_id.like(f"%.{name}"))
            for name in _GROUP_TASKS
        )
    )
    rows = session.execute(
        select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            or_(XComModel.key.in_(_KEYS), XComModel.key.like(f"{LANE_KEY_PREFIX}%")),
            own_tasks,  # another task's return value is never decoded
        )
    )
    return {(r.task_id, r.key, r.map_index): XComModel.deserialize_value(r) for r in rows}


def _tasks(session: Session, dag_id: str, run_id: str) -> dict[tuple[str, int], Any]:
    from airflow.models.taskinstance import TaskInstance as TI

    rows = session.execute(
        select(
            TI.id,
            TI.task_id,
            TI.map_index,
            TI.state,
            TI.start_date,
            TI.end_date,
            TI.try_number,
            TI.pool_slots,
        ).where(TI.dag_id == dag_id, TI.run_id == run_id)
    )
    return {(r.task_id, r.map_index): r for r in rows}


def _hitl_request(session: Session, ti_id: Any) -> dict[str, Any] | None:
    from airflow.models.hitl import HITLDetail

    found = session.execute(
        select(HITLDetail.subject, HITLDetail.body).where(HITLDetail.ti_id == ti_id)
    ).first()
    return {"subject": found.subject, "body": found.body} if found is not None else None


def _model(model: Any, raw: Any) -> Any:
    try:
        return model.model_validate(raw) if isinstance(raw, dict) else None
    except ValueError:
        return None


def read_run(session: Session, dag_id: str, run_id: str) -> RunData:
    """Every render_batch group of the run (none: the run holds no batch)."""
    from airflow.models.dagrun import DagRun

    state = session.scalar(
        select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
    )
    xcoms = _xcoms(session, dag_id, run_id)
    tasks = _tasks(session, dag_id, run_id)
    groups = []
    prepares = sorted(
        t for (t, k, _), _v in xcoms.items() if k == REPORT_KEY and t.endswith(PREPARE)
    )
    for prepare in prepares:
        ids = GroupTasks.of_prepare(prepare)
        inputs, arns = _group(ids, xcoms, tasks, session)
        groups.append((ids, inputs, arns))
    run_state = None if state is None else str(getattr(state, "value", state))
    return RunData(run_state=run_state, groups=groups)


def _by_index(xcoms: Mapping[tuple[str, str, int], Any], task_id: str, key: str) -> dict[int, Any]:
    return {i: v for (t, k, i), v in xcoms.items() if t == task_id and k == key}


def _group(
    ids: GroupTasks,
    xcoms: Mapping[tuple[str, str, int], Any],
    tasks: Mapping[tuple[str, int], Any],
    session: Session,
) -> tuple[BatchInputs, dict[int, str]]:
    report = _model(BatchReport, xcoms.get((ids.prepare, REPORT_KEY, -1)))
    spec = _model(BatchSpec, xcoms.get((ids.prepare, SPEC_KEY, -1)))
    mapping = xcoms.get((ids.prepare, RESULT_KEY, -1))
    planned = {
        index: value
        for (task, key, _), value in xcoms.items()
        if task == ids.prepare and (index := lane_index(key)) is not None
    }
    lanes = [planned.get(i) or [] for i in range(len(mapping))] if isinstance(mapping, list) else []
    renders = {i: _view(r) for (t, i), r in tasks.items() if t == ids.render and i >= 0}
    results = {i: decode_rows(v) for i, v in _by_index(xcoms, ids.render, RESULT_KEY).items()}
    live: dict[int, LiveRender] = {}
    for index, value in _by_index(xcoms, ids.render, PROGRESS_KEY).items():
        if isinstance(value, dict):
            pct = value.get("pct")
            line = value.get("line")
            live[index] = LiveRender(
                line=line if isinstance(line, int) else None,
                fraction=min(max(pct / 100, 0.0), 1.0) if isinstance(pct, int | float) else None,
            )
    arns: dict[int, str] = {}
    for index, value in _by_index(xcoms, ids.render, LINK_KEY).items():
        arn = value.get("execution_arn") if isinstance(value, dict) else None
        state = renders.get(index)
        if arn and state is not None and state.state in ("running", "deferred"):
            arns[index] = str(arn)
            live.setdefault(index, LiveRender(execution_arn=str(arn)))
    approval_row = tasks.get((ids.approval, -1))
    approval_task = _view(approval_row) if approval_row is not None else None
    request = None
    if approval_row is not None and _view(approval_row).state == "awaiting_input":
        request = _hitl_request(session, approval_row.id)
    collect_row = tasks.get((ids.collect, -1))
    manifest = xcoms.get((ids.collect, MANIFEST_KEY, -1))
    prepare_row = tasks.get((ids.prepare, -1))
    inputs = BatchInputs(
        group_id=ids.group_id,
        report=report,
        spec=spec,
        lanes=lanes,
        tasks=renders,
        results=results,
        live=live,
        prepare=_view(prepare_row) if prepare_row is not None else None,
        approval_task=approval_task,
        approval=_model(Approval, xcoms.get((ids.approval, APPROVAL_KEY, -1))),
        approval_request=request,
        collect=_view(collect_row) if collect_row is not None else None,
        manifest_uri=manifest if isinstance(manifest, str) else None,
    )
    return inputs, arns


def recent_batches(
    session: Session, dag_ids: Iterable[str] | None, limit: int = 50
) -> list[dict[str, Any]]:
    """The latest runs that hold a render_batch group, newest first (readable DAGs only)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel

    query = (
        select(
            XComModel.dag_id,
            XComModel.run_id,
            XComModel.task_id,
            XComModel.value,
            DagRun.state,
            DagRun.start_date,
            DagRun.end_date,
        )
        .join(DagRun, (DagRun.dag_id == XComModel.dag_id) & (DagRun.run_id == XComModel.run_id))
        .where(XComModel.key == REPORT_KEY, XComModel.task_id.like(f"%{PREPARE}"))
        .order_by(DagRun.id.desc())
        .limit(limit)
    )
    if dag_ids is not None:
        query = query.where(XComModel.dag_id.in_(list(dag_ids)))
    out = []
    for row in session.execute(query):
        report = _model(BatchReport, XComModel.deserialize_value(row))
        state = row.state
        out.append(
            {
                "dagId": row.dag_id,
                "runId": row.run_id,
                "groupId": GroupTasks.of_prepare(row.task_id).group_id,
                "state": str(getattr(state, "value", state)) if state is not None else None,
                "startDate": row.start_date.isoformat() if row.start_date else None,
                "endDate": row.end_date.isoformat() if row.end_date else None,
                "status": report.status if report else None,
                "backend": report.backend if report else None,
                "rows": report.rows_parsed if report else None,
                "source": report.source if report else None,
            }
        )
    return out
