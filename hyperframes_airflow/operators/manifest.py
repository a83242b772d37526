"""`collect_manifest`: write what happened to every input line, then make the run's state true."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context, ObjectStoragePath, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.backends import make_backend
from hyperframes_airflow.backends.local import iso_now
from hyperframes_airflow.contract.manifest import Manifest, ManifestRow
from hyperframes_airflow.operators._coerce import as_bool
from hyperframes_airflow.operators.prepare import SUMMARY_KEY
from hyperframes_airflow.operators.render import EXECUTION_KEY, ROW_RESULT_KEY

if TYPE_CHECKING:
    from hyperframes_airflow.backends.lambda_ import LambdaBackend

#: Render task state -> (manifest status, error) for rows that left no result behind.
_NO_RESULT: dict[str | None, tuple[str, str]] = {
    "upstream_failed": ("failed-to-start", "not started: an upstream task (deploy_site) failed"),
    "skipped": ("skipped", "not started: skipped"),
    "failed": ("failed", "render task failed without a result; see its log"),
    "removed": ("skipped", "not started: task removed"),
}
#: A failed render task that never ran (no `row_result` at all: `execute` pushes one first).
#: Marking a DAG run failed sets every map index of a running mapped task to failed, including
#: the ones still waiting for a pool slot, so "failed" alone does not mean a render started.
_NEVER_RAN = ("skipped", "not started: its task was failed before it ran (e.g. run marked failed)")


class HyperframesCollectManifestOperator(BaseOperator):
    """Gather every row by map index, write the manifest, then fail if any row did not succeed.

    Runs with `trigger_rule=all_done` so the manifest is written on every path: validation
    failed, deploy failed, some or all renders failed, dry run. Rows are aligned by map index,
    not `.output` (which silently drops failed rows and shifts the rest).
    """

    template_fields: Sequence[str] = ("manifest_path", "local_root", "fail_on_row_failure")
    ui_color = "#f3e8fd"

    def __init__(
        self,
        *,
        prepare_task_id: str,
        deploy_task_id: str,
        render_task_id: str,
        backend: str = "local",
        conn_id: str = "hyperframes_default",
        local_root: str | None = None,
        manifest_path: str | None = None,
        fail_on_row_failure: bool | str = True,
        settle_timeout_s: float = 45.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.prepare_task_id = prepare_task_id
        self.deploy_task_id = deploy_task_id
        self.render_task_id = render_task_id
        self.backend = backend
        self.conn_id = conn_id
        self.local_root = local_root
        self.manifest_path = manifest_path
        self.fail_on_row_failure = fail_on_row_failure
        self.settle_timeout_s = settle_timeout_s

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        dag_id, run_id = ti.dag_id, ti.run_id
        summary: dict[str, Any] = ti.xcom_pull(task_ids=self.prepare_task_id, key=SUMMARY_KEY) or {}
        deploy = ti.xcom_pull(task_ids=self.deploy_task_id) or {}
        rows = self._rows(ti, summary)
        problems = list(summary.get("problems", []))
        if not summary:
            problems.append(
                {
                    "line": None,
                    "field": None,
                    "severity": "error",
                    "message": "prepare_batch failed before validating the batch; see its log",
                }
            )
        manifest = Manifest(
            dag_id=dag_id,
            run_id=run_id,
            backend=self.backend,
            batch_source=summary.get("source", ""),
            site_id=deploy.get("siteId") or summary.get("siteId"),
            config=summary.get("config", {}),
            dry_run=bool(summary.get("dryRun", False)),
            estimate=summary.get("estimate"),
            problems=problems,
            rows=rows,
            written_at=iso_now(),
        ).with_totals()
        backend = make_backend(self.backend, local_root=self.local_root, conn_id=self.conn_id)
        uri = self.manifest_path or backend.default_manifest_uri(dag_id, run_id)
        write_text_atomic(uri, manifest.to_json(), conn_id=self.conn_id)
        self.log.info("Manifest written to %s\n%s", uri, manifest.summary_table())
        assert manifest.totals is not None
        self.log.info("Totals: %s", manifest.totals.model_dump(by_alias=True))
        failed = manifest.failed_rows
        if (failed or not summary) and as_bool(
            self.fail_on_row_failure, name="fail_on_row_failure"
        ):
            raise AirflowFailException(
                f"{len(failed)} of {len(rows)} row(s) did not succeed "
                f"({manifest.totals.by_status}); manifest: {uri}"
            )
        return {"manifest": uri, "totals": manifest.totals.model_dump(by_alias=True)}

    def _rows(self, ti: Any, summary: dict[str, Any]) -> list[ManifestRow]:
        """One manifest row per input line: the render's own result when it left one (found
        by line, since a task may hold several rows), else what the task's state tells."""
        planned = summary.get("rows", [])
        indexes = sorted({r["mapIndex"] for r in planned if r.get("mapIndex") is not None})
        results: dict[int, dict[str, Any]] = {}
        states: dict[int, str] = {}
        never_ran: set[int] = set()
        if indexes:
            pulled = ti.xcom_pull(
                task_ids=self.render_task_id, key=ROW_RESULT_KEY, map_indexes=indexes
            )
            never_ran = {i for i, value in zip(indexes, pulled, strict=True) if value is None}
            for value in pulled:
                results.update(_by_line(value))
            states = self._render_states(ti)
            killed = sorted(
                {
                    r["mapIndex"]
                    for r in planned
                    if r.get("mapIndex") is not None
                    and r["line"] not in results
                    and states.get(r["mapIndex"]) == "failed"
                    and r["mapIndex"] not in never_ran
                }
            )
            if killed:
                results.update(self._settle_killed(ti, killed))
        rows: list[ManifestRow] = []
        for r in planned:
            result = results.get(r["line"])
            if result:
                rows.append(ManifestRow.model_validate(result))
                continue
            status, error = r.get("status"), r.get("error")
            if status is None:
                index = r.get("mapIndex")
                state = states.get(index) if index is not None else None
                if state == "failed" and index in never_ran:
                    status, error = _NEVER_RAN
                else:
                    status, error = _NO_RESULT.get(state, ("skipped", "not started"))
            rows.append(
                ManifestRow(
                    input_line=r["line"],
                    output_key=r.get("outputKey"),
                    status=status,
                    execution_name=r.get("executionName"),
                    error=error,
                )
            )
        return rows

    def _settle_killed(self, ti: Any, indexes: list[int]) -> dict[int, dict[str, Any]]:
        """Rows whose task failed without their result: usually a task killed by a user (mark
        failed, run failed) whose render is being stopped right now. The scheduler runs this
        task as soon as the render task is marked, so give the kill a moment to land, then
        record what really happened (`aborted`, with the execution), not a guess."""
        backend: LambdaBackend | None = None
        if self.backend == "lambda":
            from hyperframes_airflow.backends.lambda_ import LambdaBackend

            found = make_backend("lambda", conn_id=self.conn_id)
            assert isinstance(found, LambdaBackend)
            backend = found
        settled: dict[int, dict[str, Any]] = {}
        executions: dict[int, dict[str, Any]] = {}
        first_seen: dict[int, int] = {}
        pending = set(indexes)
        deadline = time.monotonic() + self.settle_timeout_s
        while pending:
            for index in sorted(pending):
                done = _by_line(
                    ti.xcom_pull(
                        task_ids=self.render_task_id, key=ROW_RESULT_KEY, map_indexes=index
                    )
                )
                settled.update(done)
                if backend is None:  # local: the killed task pushes its aborted row itself
                    if len(done) > first_seen.setdefault(index, len(done)):
                        pending.discard(index)
                    continue
                execution = ti.xcom_pull(
                    task_ids=self.render_task_id, key=EXECUTION_KEY, map_indexes=index
                )
                if not execution or execution["line"] in settled:
                    pending.discard(index)
                    continue
                executions[index] = execution
                if backend.status(execution["executionArn"]) != "RUNNING":
                    settled[execution["line"]] = backend.completed_row(execution)
                    pending.discard(index)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        for index in sorted(pending & set(executions)):
            # The task is gone but its render still runs: it must not outlive its task.
            execution = executions[index]
            self.log.warning("Its task failed; stopping %s", execution["executionArn"])
            assert backend is not None
            backend.stop(execution["executionArn"], cause="its Airflow task failed")
            settled[execution["line"]] = backend.completed_row(execution)
        return settled

    def _render_states(self, ti: Any) -> dict[int, str]:
        try:
            found = ti.get_task_states(
                dag_id=ti.dag_id, task_ids=[self.render_task_id], run_ids=[ti.run_id]
            )
        except Exception:  # best effort: the states only refine error messages
            self.log.warning("Could not read render task states", exc_info=True)
            return {}
        states: dict[int, str] = {}
        for key, state in (found.get(ti.run_id) or {}).items():
            prefix, _, index = str(key).rpartition("_")
            if prefix == self.render_task_id and index.isdigit():
                states[int(index)] = str(state)
        return states


def _by_line(value: Any) -> dict[int, dict[str, Any]]:
    """A render task's results (a list of manifest rows; one dict from older tasks) by line.

    Results the trigger pushed (`TaskSuccessEvent`/`TaskFailedEvent` xcoms) reach a worker as a
    JSON *string* on a real Airflow 3.3 stack: the triggerer stores them through the ORM's
    `XComModel.set`, which json-encodes the value into the JSON column, and the Execution API
    hands that column back raw (`dag.test()` does not show it). Decode such strings here.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if isinstance(value, dict):
        value = [value]
    return {r["inputLine"]: r for r in value or [] if isinstance(r, dict) and "inputLine" in r}


def write_text_atomic(uri: str, text: str, *, conn_id: str | None = None) -> None:
    """Write a whole document so readers never see half of it.

    Local files go through a temp file and `os.replace`; object stores get one PUT, which is
    atomic on S3.
    """
    path = ObjectStoragePath(uri, conn_id=conn_id)
    if path.protocol in ("", "file", "local"):
        local = Path(path.path)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", dir=local.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, local)
        return
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
