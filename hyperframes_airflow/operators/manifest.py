"""`collect_manifest`: write what happened to every input line, then make the run's state true.

It also records what the cost approval decided and which run a rerun repeats, counts each
row's attempts across reruns of the same run, and, when it succeeds, emits an Asset event for
the batch's manifests (`manifest_asset`) so that delivery or notification DAGs run on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.contract.approval import Approval
from hyperframes_airflow.contract.assemble import (
    gate_problem,
    manifest_rows,
    planned_lanes,
    settle_report,
)
from hyperframes_airflow.contract.manifest import Manifest, ManifestRow
from hyperframes_airflow.contract.options import optional_text, parse_bool
from hyperframes_airflow.contract.progress import iso_now
from hyperframes_airflow.contract.rerun import count_attempts
from hyperframes_airflow.contract.roots import NotUnderAllowedRoot
from hyperframes_airflow.contract.rows import BatchReport, BatchSpec, Lane, decode_rows
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID
from hyperframes_airflow.operators._backend import BACKEND_TEMPLATE_FIELDS, BackendSettings
from hyperframes_airflow.storage import read_text, write_text_atomic
from hyperframes_airflow.xcom import (
    APPROVAL_KEY,
    MANIFEST_KEY,
    PROGRESS_KEY,
    REPORT_KEY,
    SPEC_KEY,
    lane_key,
)

__all__ = ["HyperframesCollectManifestOperator", "manifest_asset"]


def manifest_asset(dag_id: str, group_id: str = "render_batch") -> Asset:
    """The Asset a render_batch group's manifests are events of: schedule a DAG on it, and
    read the manifest's URI from the event's extra (`manifest_uri`).

    :param dag_id: The DAG that holds the group.
    :param group_id: The group's id (`render_batch`'s `group_id`).
    """
    return Asset(
        uri=f"x-hyperframes://manifests/{dag_id}/{group_id}",
        name=f"hyperframes.manifest.{dag_id}.{group_id}",
    )


#: How much earlier than the run's start its renders are looked for (clock skew).
RUN_START_SKEW = timedelta(minutes=5)
#: Render task states after which a task will not record anything more by itself.
_SETTLED_STATES = frozenset({"failed", "upstream_failed", "skipped", "removed", "success"})


class HyperframesCollectManifestOperator(BackendSettings, BaseOperator):
    """Gather every row, write the manifest, then fail if the batch did not fully render.

    A teardown of the group, so it runs on every path (validation failed, deploy failed, rows
    failed, the run marked failed) and the manifest is always written first. Rows are matched
    by line from the render tasks' results (`return_value`); a task that ended without one (a
    kill) is settled from the backend itself, which also stops a render that would outlive
    its task. The run then fails when prepare_batch did not plan the batch (a missing or
    empty batch, bad config...), or when any row did not succeed (`fail_on_row_failure`).

    :param prepare_task_id: The group's prepare_batch task.
    :param deploy_task_id: The group's deploy_site task.
    :param render_task_id: The group's mapped render task.
    :param group_id: The group's id (part of the default manifest path).
    :param approval_task_id: The group's approve_cost task, when it has one.
    :param manifest_path: Where to write the manifest (default: next to the outputs).
    :param fail_on_row_failure: Fail the run when any row did not succeed.
    :param settle_timeout_s: How long to wait for killed tasks to record their rows.
    """

    template_fields: Sequence[str] = (
        "manifest_path",
        "fail_on_row_failure",
        *BACKEND_TEMPLATE_FIELDS,
    )
    ui_color = "#f3e8fd"

    def __init__(
        self,
        *,
        prepare_task_id: str,
        deploy_task_id: str,
        render_task_id: str,
        group_id: str = "render_batch",
        approval_task_id: str | None = None,
        backend: str = "local",
        conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        local_root: str | None = None,
        allowed_roots: Sequence[str] | None = None,
        manifest_path: str | None = None,
        fail_on_row_failure: bool | str = True,
        settle_timeout_s: float = 20.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.set_backend(
            backend, conn_id, region_name, verify, botocore_config, local_root, allowed_roots
        )
        self.remember_templated(manifest_path=manifest_path, local_root=local_root)
        self.prepare_task_id = prepare_task_id
        self.deploy_task_id = deploy_task_id
        self.render_task_id = render_task_id
        self.group_id = group_id
        self.approval_task_id = approval_task_id
        self.manifest_path = manifest_path
        self.fail_on_row_failure = fail_on_row_failure
        self.settle_timeout_s = settle_timeout_s

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        raw_report = ti.xcom_pull(task_ids=self.prepare_task_id, key=REPORT_KEY)
        approval = self._approval(ti)
        report = settle_report(
            BatchReport.model_validate(raw_report) if raw_report else None, approval
        )
        raw_spec = ti.xcom_pull(task_ids=self.prepare_task_id, key=SPEC_KEY)
        spec = BatchSpec.model_validate(raw_spec) if raw_spec else None
        mapping = ti.xcom_pull(task_ids=self.prepare_task_id) or []
        lanes = planned_lanes(
            report,
            [
                ti.xcom_pull(task_ids=self.prepare_task_id, key=lane_key(index))
                for index in range(len(mapping))
            ],
        )
        mapped = bool(mapping) and (report is None or report.rendered)
        since = _run_started(context)
        states, results, ran = (
            ({}, {}, set()) if not mapped else self._gather(ti, spec, lanes, since)
        )
        rows = manifest_rows(
            report=report, lanes=lanes, mapped=mapped, results=results, task_states=states, ran=ran
        )
        problems = list(report.problems) if report is not None else []
        if report is None:
            problems.append(_problem("prepare_batch did not run or recorded nothing; see its log"))
        stopped = gate_problem(approval)
        if stopped is not None:
            problems.append(stopped)
        elif report is not None and report.status == "needs-approval":
            problems.append(_problem("the cost approval did not finish (its task did not end)"))
        uri, refused = self._manifest_uri(ti)
        if refused:
            problems.append(_problem(refused))
        rows = count_attempts(self._previous(uri, ti.dag_id, ti.run_id), rows)
        deploy = ti.xcom_pull(task_ids=self.deploy_task_id) or {}
        manifest = Manifest(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            backend=self.backend,
            batch_source=report.source if report is not None else "",
            site_id=deploy.get("siteId") or (report.site_id if report else None),
            config=report.config if report is not None else {},
            dry_run=report is not None and report.status == "dry-run",
            estimate=report.estimate if report is not None else None,
            problems=problems,
            approval=approval,
            rerun_of=report.rerun_of if report is not None else None,
            rows=rows,
            written_at=iso_now(),
        ).with_totals()
        write_text_atomic(uri, manifest.to_json(), conn_id=self.conn_id)
        ti.xcom_push(key=MANIFEST_KEY, value=uri)  # also when this task then fails (the page)
        assert manifest.totals is not None
        self.log.info("Manifest written to %s\n%s", uri, manifest.summary_table())
        self.log.info("Totals: %s", manifest.totals.model_dump(by_alias=True))
        if refused:
            raise AirflowFailException(refused)
        if report is None or report.status not in ("planned", "dry-run"):
            why = problems[-1]["message"] if problems else "prepare_batch failed"
            raise AirflowFailException(f"The batch was not rendered: {why}; manifest: {uri}")
        failed = manifest.failed_rows
        if failed and parse_bool(
            self.fail_on_row_failure, name="fail_on_row_failure", default=True
        ):
            raise AirflowFailException(
                f"{len(failed)} of {len(rows)} row(s) did not succeed "
                f"({manifest.totals.by_status}); manifest: {uri}"
            )
        self._emit_asset_event(context, manifest, uri)
        return {"manifest": uri, "totals": manifest.totals.model_dump(by_alias=True)}

    def _manifest_uri(self, ti: Any) -> tuple[str, str | None]:
        """Where to write, and why the chosen path was refused: a templated path must stay
        under the allowed roots, else the default is used (the manifest must be written)."""
        default = self.render_backend().default_manifest_uri(ti.dag_id, ti.run_id, self.group_id)
        chosen = optional_text(self.manifest_path)
        if chosen is None:
            return default, None
        try:
            self.guard("manifest_path", chosen, own_root=True)
        except NotUnderAllowedRoot as exc:
            self.log.error("%s; writing the manifest to %s instead", exc, default)
            return default, f"{exc}; the manifest was written to {default} instead"
        return chosen, None

    # -- outcomes ----------------------------------------------------------------------------

    def _approval(self, ti: Any) -> Approval | None:
        """The approve_cost task's answer (None: no such task, or it never answered)."""
        if not self.approval_task_id:
            return None
        raw = ti.xcom_pull(task_ids=self.approval_task_id, key=APPROVAL_KEY)
        try:
            return Approval.model_validate(raw) if isinstance(raw, dict) else None
        except ValueError:
            return None

    def _previous(self, uri: str, dag_id: str, run_id: str) -> Manifest | None:
        """The manifest this run wrote before (a rerun of its failed rows rewrites it)."""
        try:
            text = read_text(uri, conn_id=self.conn_id)
            previous = Manifest.model_validate_json(text) if text else None
        except (OSError, ValueError) as exc:
            self.log.warning("Could not read the earlier manifest at %s: %s", uri, exc)
            return None
        if previous is None or (previous.dag_id, previous.run_id) != (dag_id, run_id):
            return None  # another run's (or another DAG's) manifest at a shared path
        return previous

    def _emit_asset_event(self, context: Context, manifest: Manifest, uri: str) -> None:
        """The manifest as an event of each Asset in `outlets` (counts and ids, no row data)."""
        assert manifest.totals is not None
        extra: dict[str, Any] = {
            "dag_id": manifest.dag_id,
            "run_id": manifest.run_id,
            "group_id": self.group_id,
            "manifest_uri": uri,
            "rows": manifest.totals.rows,
            "by_status": manifest.totals.by_status,
            "succeeded": manifest.totals.succeeded,
            "not_succeeded": manifest.totals.not_succeeded,
            "cost_usd": manifest.totals.actual_cost_usd,
            "estimated_usd": (manifest.estimate or {}).get("totalUsd"),
        }
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = extra

    # -- gathering ---------------------------------------------------------------------------

    def _gather(
        self, ti: Any, spec: BatchSpec | None, lanes: list[Lane], since: datetime | None
    ) -> tuple[dict[int, str], dict[int, ManifestRow], set[int]]:
        """Task states, results by line, and the map indexes that are known to have run
        (`since`: when the run started, which bounds the backend's search for renders)."""
        states = self._render_states(ti)
        results = self._results(ti)
        ran = {i for i, lane in enumerate(lanes) if any(r.line in results for r in lane.rows)}
        for value in _per_index(
            ti.xcom_pull(task_ids=self.render_task_id, key=PROGRESS_KEY), value_is_list=False
        ):
            if isinstance(value, dict) and isinstance(value.get("mapIndex"), int):
                ran.add(value["mapIndex"])
        missing = [
            i for i, lane in enumerate(lanes) if not all(r.line in results for r in lane.rows)
        ]
        killed = [i for i in missing if states.get(i) == "failed" and i in ran]
        deadline = time.monotonic() + self.settle_timeout_s
        while killed and time.monotonic() < deadline:  # a killed task records its rows itself
            time.sleep(1.0)
            results = self._results(ti)
            killed = [i for i in killed if not all(r.line in results for r in lanes[i].rows)]
        pending = [
            (ref, states.get(index))
            for index in missing
            if states.get(index) in _SETTLED_STATES
            for ref in lanes[index].rows
            if ref.line not in results
        ]
        if pending and spec is not None:  # one look at the backend for all of them
            results.update(
                self.render_backend().settle(
                    spec, pending, dag_id=ti.dag_id, run_id=ti.run_id, since=since
                )
            )
        return states, results, ran

    def _results(self, ti: Any) -> dict[int, ManifestRow]:
        """Every render task's rows, by line (one XCom read for all the map indexes)."""
        found: dict[int, ManifestRow] = {}
        for value in _per_index(ti.xcom_pull(task_ids=self.render_task_id), value_is_list=True):
            for row in decode_rows(value):
                found[row.input_line] = row
        return found

    def _render_states(self, ti: Any) -> dict[int, str]:
        found = ti.get_task_states(
            dag_id=ti.dag_id, task_ids=[self.render_task_id], run_ids=[ti.run_id]
        )
        states: dict[int, str] = {}
        for key, state in (found.get(ti.run_id) or {}).items():
            prefix, _, index = str(key).rpartition("_")
            if prefix == self.render_task_id and index.isdigit():
                states[int(index)] = str(state)
        return states


def _per_index(pulled: Any, *, value_is_list: bool) -> list[Any]:
    """What `xcom_pull` over every map index gave, as one value per index that has one: Airflow
    returns a single index's value bare, so a bare value is told apart by its shape (a render's
    value is a list of row dicts; a progress value is one dict)."""
    if pulled is None:
        return []
    if not isinstance(pulled, list):
        return [pulled]
    if value_is_list and pulled and all(isinstance(v, dict) for v in pulled):
        return [pulled]
    return pulled


def _run_started(context: Context) -> datetime | None:
    """When the run (this try of it: a clear restarts it) began, less a margin for the skew
    between this clock and the backend's; None when unknown (the backend then looks wider)."""
    dag_run = context.get("dag_run")
    started = getattr(dag_run, "start_date", None)
    return started - RUN_START_SKEW if isinstance(started, datetime) else None


def _problem(message: str) -> dict[str, Any]:
    return {"line": None, "field": None, "severity": "error", "message": message}
