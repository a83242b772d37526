"""`prepare_batch`: read and validate every row before anything is deployed or started."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context, ObjectStoragePath, conf
from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.backends import make_backend
from hyperframes_airflow.contract.composition import frame_count
from hyperframes_airflow.contract.config import InvalidConfigError, RenderConfig
from hyperframes_airflow.contract.estimate import estimate_batch
from hyperframes_airflow.contract.issues import Issue
from hyperframes_airflow.contract.plan import BatchPlan, load_project, plan_batch
from hyperframes_airflow.operators._coerce import as_bool, as_config_dict, as_optional_float

#: Variables larger than this (JSON characters) are not copied into the mapping XCom.
INLINE_VARIABLES_MAX_BYTES = 4096

#: XCom key of the batch summary that `collect_manifest` reads (rows aligned to map indexes).
SUMMARY_KEY = "batch"


class HyperframesPrepareBatchOperator(BaseOperator):
    """Validate the whole batch, estimate its cost, and emit one small mapping entry per row.

    Strict mode fails here, before any deploy or render, listing every bad line. Otherwise bad
    rows are kept out of the mapping and reported as `invalid` in the manifest. The return value
    is the list `expand_kwargs` maps over; the full row list for the manifest goes to XCom
    under `batch`, so the manifest can account for every input line.
    """

    template_fields: Sequence[str] = (
        "project_dir",
        "batch",
        "config",
        "strict",
        "strict_variables",
        "is_dry_run",
        "max_cost_usd",
        "confirm_cost",
        "local_root",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"config": "json"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        project_dir: str,
        batch: str,
        config: RenderConfig | dict[str, Any],
        backend: str = "local",
        conn_id: str = "hyperframes_default",
        local_root: str | None = None,
        strict: bool | str = True,
        strict_variables: bool | str = False,
        dry_run: bool | str = False,
        max_cost_usd: float | str | None = None,
        confirm_cost: bool | str = False,
        rows_per_task: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = project_dir
        self.batch = batch
        self.config = config
        self.backend = backend
        self.conn_id = conn_id
        self.local_root = local_root
        self.strict = strict
        self.strict_variables = strict_variables
        self.is_dry_run = dry_run
        self.max_cost_usd = max_cost_usd
        self.confirm_cost = confirm_cost
        self.rows_per_task = rows_per_task

    def execute(self, context: Context) -> list[dict[str, Any]]:
        ti = context["ti"]
        dry_run = as_bool(self.is_dry_run, name="dry_run")
        summary: dict[str, Any] = {
            "source": str(self.batch),
            "dryRun": dry_run,
            "backend": self.backend,
            "siteId": None,
            "config": {},
            "estimate": None,
            "problems": [],
            "rows": [],
        }
        # Whatever happens below, collect_manifest must find a summary to write the manifest.
        ti.xcom_push(key=SUMMARY_KEY, value=summary)
        try:
            config = RenderConfig.model_validate(as_config_dict(self.config))
        except InvalidConfigError as exc:
            summary["problems"] = [Issue(None, "config", "error", str(exc)).to_dict()]
            ti.xcom_push(key=SUMMARY_KEY, value=summary)
            raise AirflowFailException(str(exc)) from exc
        try:
            composition, site_id = load_project(self.project_dir)
            summary["siteId"] = site_id
            backend = make_backend(self.backend, local_root=self.local_root, conn_id=self.conn_id)
            config = self._with_stack_defaults(config, backend)
            summary["config"] = config.to_wire()
            plan = self._plan(
                context, config, composition, site_id, getattr(backend, "bucket_name", None)
            )
        except Exception as exc:  # the manifest must say why nothing rendered
            summary["problems"] = [
                Issue(None, None, "error", f"{type(exc).__name__}: {exc}").to_dict()
            ]
            ti.xcom_push(key=SUMMARY_KEY, value=summary)
            raise
        summary["problems"] = [i.to_dict() for i in plan.issues]
        estimate = self._estimate(plan, config, backend)
        summary["estimate"] = estimate
        self._log_plan(plan, estimate)
        per_task = self._rows_per_task(len(plan.rows))
        if per_task > 1:
            self.log.info(
                "%d rows exceed what Airflow maps per task; each render task takes %d rows in turn",
                len(plan.rows),
                per_task,
            )
        mapping = [] if dry_run else self._mapping(plan, site_id, summary["config"], per_task)
        summary["rows"] = self._summary_rows(plan, dry_run, per_task)
        ti.xcom_push(key=SUMMARY_KEY, value=summary)

        if plan.batch_level_errors or (plan.invalid and as_bool(self.strict, name="strict")):
            self._fail_all(ti, summary, plan)
        self._cost_gate(ti, summary, estimate, dry_run)
        return mapping

    # -- steps ----------------------------------------------------------------------------------

    @staticmethod
    def _with_stack_defaults(config: RenderConfig, backend: Any) -> RenderConfig:
        """Like `hyperframes lambda render-batch`, size each render's chunk wave to the stack's
        reserved concurrency (`workerConcurrency`) unless the user chose a value."""
        reserved = getattr(backend, "reserved_concurrency", None)
        if config.worker_concurrency is None and reserved:
            return RenderConfig.model_validate(
                {**config.model_dump(exclude_none=True), "worker_concurrency": reserved}
            )
        return config

    def _plan(
        self,
        context: Context,
        config: RenderConfig,
        composition: Any,
        site_id: str,
        bucket: str | None,
    ) -> BatchPlan:
        source = ObjectStoragePath(str(self.batch), conn_id=self.conn_id)
        self.log.info("Reading batch %s", self.batch)
        kwargs: dict[str, Any] = {} if bucket is None else {"bucket": bucket}
        with source.open("rb") as handle:
            return plan_batch(
                handle,
                config=config,
                composition=composition,
                site_id=site_id,
                dag_id=context["dag"].dag_id,
                run_id=context["run_id"],
                strict_variables=as_bool(self.strict_variables, name="strict_variables"),
                **kwargs,
            )

    def _estimate(self, plan: BatchPlan, config: RenderConfig, backend: Any) -> dict[str, Any]:
        comp = plan.composition
        duration = comp.duration_s if comp and comp.duration_s else None
        if duration is None:
            return {"rows": len(plan.rows), "note": "composition declares no duration; no estimate"}
        frames = frame_count(duration, config.fps)
        est = estimate_batch(
            rows=len(plan.rows),
            total_frames=frames,
            width=config.width,
            height=config.height,
            memory_mb=getattr(backend, "lambda_memory_mb", 10240),
            chunk_size=config.chunk_size,
            max_parallel_chunks=config.max_parallel_chunks,
            target_chunk_frames=config.target_chunk_frames,
        )
        data: dict[str, Any] = est.model_dump(by_alias=True)
        if backend.kind == "local":
            data["note"] = (
                "local backend: renders on this worker, no cloud cost "
                "(Lambda figures shown for reference)"
            )
        return data

    def _mapping(
        self, plan: BatchPlan, site_id: str, config: dict[str, Any], per_task: int
    ) -> list[dict[str, Any]]:
        """One small entry per render task: its rows (usually one). Big variables stay in the
        batch file: the row carries a pointer (source + line) that the render task resolves,
        so XCom stays small."""
        entries: list[dict[str, Any]] = []
        for start in range(0, len(plan.rows), per_task):
            rows = []
            for row in plan.rows[start : start + per_task]:
                entry: dict[str, Any] = {
                    "line": row.line,
                    "outputKey": row.output_key,
                    "executionName": row.execution_name,
                    "digest": row.input_digest,
                    "siteId": site_id,
                    "config": config,
                }
                if len(json.dumps(row.variables, ensure_ascii=False)) <= INLINE_VARIABLES_MAX_BYTES:
                    entry["variables"] = dict(row.variables)
                else:
                    entry["variablesRef"] = {"source": str(self.batch), "line": row.line}
                rows.append(entry)
            entries.append({"rows": rows})
        return entries

    def _rows_per_task(self, renderable: int) -> int:
        """1, unless the batch has more rows than Airflow maps (`[core] max_map_length`): then
        the fewest consecutive rows per task that fit, rendered one after the other."""
        if self.rows_per_task:
            return max(1, int(self.rows_per_task))
        limit = conf.getint("core", "max_map_length", fallback=1024)
        return max(1, math.ceil(renderable / limit))

    @staticmethod
    def _summary_rows(plan: BatchPlan, dry_run: bool, per_task: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for position, row in enumerate(plan.rows):
            index = position // per_task
            rows.append(
                {
                    "line": row.line,
                    "outputKey": row.output_key,
                    "executionName": row.execution_name,
                    "mapIndex": None if dry_run else index,
                    "status": "would-invoke" if dry_run else None,
                }
            )
        for bad in plan.invalid:
            rows.append(
                {
                    "line": bad.line,
                    "outputKey": bad.output_key,
                    "status": "invalid",
                    "error": bad.error_text,
                }
            )
        rows.sort(key=lambda r: r["line"])
        return rows

    def _log_plan(self, plan: BatchPlan, estimate: dict[str, Any]) -> None:
        self.log.info(
            "Batch: %d row(s) parsed, %d renderable, %d invalid, %d warning(s)",
            plan.rows_parsed,
            len(plan.rows),
            len(plan.invalid),
            len(plan.warnings),
        )
        for issue in plan.issues:
            log = self.log.error if issue.severity == "error" else self.log.warning
            log("%s", issue)
        if "totalUsd" in estimate:
            self.log.info("Estimate: %s", {k: v for k, v in estimate.items() if k != "assumptions"})

    def _fail_all(self, ti: Any, summary: dict[str, Any], plan: BatchPlan) -> None:
        for row in summary["rows"]:
            if row.get("status") is None:
                row.update(
                    status="skipped",
                    mapIndex=None,
                    error="not rendered: the batch failed validation (strict mode)",
                )
        ti.xcom_push(key=SUMMARY_KEY, value=summary)
        errors = plan.errors
        listing = "\n".join(f"  - {i}" for i in errors[:200])
        more = f"\n  ... and {len(errors) - 200} more" if len(errors) > 200 else ""
        raise AirflowFailException(
            f"Batch validation failed: {len(errors)} error(s) in {self.batch}\n{listing}{more}"
        )

    def _cost_gate(
        self, ti: Any, summary: dict[str, Any], estimate: dict[str, Any], dry_run: bool
    ) -> None:
        limit = as_optional_float(self.max_cost_usd, name="max_cost_usd")
        total = estimate.get("totalUsd")
        if limit is None or total is None or self.backend == "local" or dry_run:
            return
        if total <= limit or as_bool(self.confirm_cost, name="confirm_cost"):
            return
        message = (
            f"Estimated cost ${total:.4f} exceeds max_cost_usd ${limit:.4f}. "
            "Confirm it by triggering with confirm_cost=true (DAG param or render_batch argument), "
            "or raise max_cost_usd."
        )
        summary["problems"].append(Issue(None, "max_cost_usd", "error", message).to_dict())
        for row in summary["rows"]:
            if row.get("status") is None:
                row.update(status="skipped", mapIndex=None, error="not rendered: cost gate")
        ti.xcom_push(key=SUMMARY_KEY, value=summary)
        raise AirflowFailException(message)
