"""`prepare_batch`: read and validate every row before anything is deployed or started."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context, conf
from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.backends.base import Resolved
from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.config import InvalidConfigError, RenderConfig
from hyperframes_airflow.contract.deployed_site import DeployedSiteError, validate_site_id
from hyperframes_airflow.contract.estimate import (
    BatchEstimate,
    GateDecision,
    cost_gate,
    estimate_batch,
)
from hyperframes_airflow.contract.issues import Issue
from hyperframes_airflow.contract.manifest import Manifest
from hyperframes_airflow.contract.options import (
    optional_text,
    parse_bool,
    parse_config_mapping,
    parse_cost_limit,
)
from hyperframes_airflow.contract.plan import BatchPlan, load_project, plan_batch
from hyperframes_airflow.contract.progress import DEFAULT_MEMORY_MB
from hyperframes_airflow.contract.rerun import narrow_plan, rerun_of, rerun_targets
from hyperframes_airflow.contract.rows import BatchReport, BatchSpec, InvalidLine, Lane, make_lanes
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID
from hyperframes_airflow.operators._backend import BACKEND_TEMPLATE_FIELDS, BackendSettings
from hyperframes_airflow.storage import open_batch, read_text
from hyperframes_airflow.xcom import REPORT_KEY, SPEC_KEY, lane_key

#: How many problems the task log lists in full (all of them are in the manifest).
LOGGED_PROBLEMS = 200


class HyperframesPrepareBatchOperator(BackendSettings, BaseOperator):
    """Validate the whole batch, estimate its cost, and plan one lane per render task.

    Strict mode fails here, before any deploy or render, listing every bad line; otherwise bad
    rows are reported as `invalid` and the rest render. Each render task's lane (row positions
    in the batch and digests, never variables: each render reads its own rows back) is its own
    `lane.<i>` XCom; the return value, what `expand_kwargs` maps over, holds only each task's
    grid label. The facts all renders share go to XCom once (`spec`), and
    a `report` for the manifest is pushed first, on every path, so the manifest can always say
    why nothing rendered.

    :param project_dir: The HyperFrames project (contains index.html).
    :param site_id: A site already deployed (e.g. by `hyperframes-airflow deploy` in CI):
        render it without the project on this worker. Give this or `project_dir`.
    :param batch: The JSONL batch: a local path, `file://` or `s3://` URI.
    :param config: The render config (`RenderConfig` or a mapping; templated values accepted).
    :param strict: Fail the run when any row is invalid (else render the valid ones).
    :param strict_variables: Variables that do not match the template make the row invalid.
    :param dry_run: Validate and estimate only; render nothing.
    :param max_cost_usd: Above this estimate the batch needs approval (status
        `needs-approval`: the approval task decides), unless `confirm_cost`.
    :param confirm_cost: Render even above `max_cost_usd`.
    :param rerun_of: A manifest URI: plan only that run's rows that did not succeed
        (`contract.rerun.RERUN_STATUSES`), read again from that run's batch (`batch` is then
        not read), each still under the output key the manifest names.
    :param rows_per_task: Rows each render task renders back to back (default 1, or what
        `[core] max_map_length` forces).
    :param render_timeout_s: Each row's deadline (passed on to the renders).
    """

    template_fields: Sequence[str] = (
        "project_dir",
        "site_id",
        "batch",
        "config",
        "strict",
        "strict_variables",
        "is_dry_run",
        "max_cost_usd",
        "confirm_cost",
        "rerun_of",
        *BACKEND_TEMPLATE_FIELDS,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"config": "json"}
    ui_color = "#e8f0fe"
    _report: BatchReport

    def __init__(
        self,
        *,
        project_dir: str | None = None,
        site_id: str | None = None,
        batch: str,
        config: RenderConfig | dict[str, Any],
        backend: str = "local",
        conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        local_root: str | None = None,
        allowed_roots: Sequence[str] | None = None,
        strict: bool | str = True,
        strict_variables: bool | str = False,
        dry_run: bool | str = False,
        max_cost_usd: float | str | None = None,
        confirm_cost: bool | str = False,
        rows_per_task: int | None = None,
        rerun_of: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rerun_of = rerun_of
        self.set_backend(
            backend, conn_id, region_name, verify, botocore_config, local_root, allowed_roots
        )
        self.remember_templated(
            project_dir=project_dir, batch=batch, local_root=local_root, rerun_of=rerun_of
        )
        self.project_dir = project_dir
        self.site_id = site_id
        self.batch = batch
        self.config = config
        self.strict = strict
        self.strict_variables = strict_variables
        self.is_dry_run = dry_run
        self.max_cost_usd = max_cost_usd
        self.confirm_cost = confirm_cost
        if rows_per_task is not None and rows_per_task < 1:
            raise ValueError(f"rows_per_task must be >= 1; got {rows_per_task}")
        self.rows_per_task = rows_per_task

    def execute(self, context: Context) -> list[dict[str, Any]]:
        ti = context["ti"]
        self._report = BatchReport(status="failed", backend=self.backend, source=str(self.batch))
        ti.xcom_push(key=REPORT_KEY, value=self._report.dump())  # whatever happens: a report
        try:
            lanes = self._prepare(context)
        except Exception as exc:  # the manifest must say why nothing rendered
            report = self._report
            if report.status == "planned":  # an unexpected failure after planning
                report = report.model_copy(update={"status": "failed"})
            if report.status == "failed" and not any(
                p["severity"] == "error" for p in report.problems
            ):
                report = report.problem(Issue(None, None, "error", _explain(exc)))
            ti.xcom_push(key=REPORT_KEY, value=report.dump())
            if isinstance(exc, AirflowFailException):
                raise
            raise AirflowFailException(_explain(exc)) from exc
        for index, lane in enumerate(lanes):
            ti.xcom_push(key=lane_key(index), value=lane.dump()["rows"])
        ti.xcom_push(key=REPORT_KEY, value=self._report.dump())
        return [{"label": lane.label} for lane in lanes]

    def _prepare(self, context: Context) -> list[Lane]:
        """Plan the batch; `self._report` always holds what is known so far."""
        dry_run = parse_bool(self.is_dry_run, name="dry_run", default=False)
        try:
            config = RenderConfig.model_validate(parse_config_mapping(self.config))
        except InvalidConfigError as exc:
            self._report = self._report.problem(Issue(None, "config", "error", str(exc)))
            raise AirflowFailException(str(exc)) from exc
        composition, site_id = self._site()
        self._update(site_id=site_id)
        resolved = self.render_backend().resolve(site_id=site_id, config=config)
        config = resolved.config
        self._update(config=config.to_wire())
        rerun = self._rerun_manifest(resolved.source_conn_id)
        source = str(self.batch or "").strip()
        if rerun is not None:  # line numbers only mean something in that run's own batch
            if source and source != rerun[1].batch_source:
                self.log.warning("rerun_of: reading %s, not %s", rerun[1].batch_source, source)
            source = rerun[1].batch_source
            self.guard("rerun_of", source, own_root=True)  # a user's choice, through the manifest
        self.guard("batch", source, own_root=True)
        self._update(source=source)
        self.log.info("Reading batch %s", source)
        with open_batch(source, resolved.source_conn_id) as handle:
            plan = plan_batch(
                handle,
                config=config,
                composition=composition,
                site_id=site_id,
                dag_id=context["dag"].dag_id,
                run_id=context["run_id"],
                strict_variables=parse_bool(
                    self.strict_variables, name="strict_variables", default=False
                ),
                bucket=resolved.digest_bucket,
            )
        if rerun is not None:
            uri, manifest = rerun
            targets = rerun_targets(manifest)
            plan = narrow_plan(plan, targets)
            self._update(rerun_of=rerun_of(manifest, uri))
            self.log.info(
                "Rerun of %s (run %s): %d row(s) did not succeed there, %d of them render now",
                uri,
                manifest.run_id,
                len(targets),
                len(plan.rows),
            )
        estimate = self._estimate(plan, composition, config, resolved)
        gate = self._cost_gate(estimate)
        self._log_plan(plan, estimate, gate)
        refs = [row.ref() for row in plan.rows]
        per_task = self._rows_per_task(len(refs))
        if per_task > 1:
            self.log.info(
                "%d rows: each render task renders %d of them back to back", len(refs), per_task
            )
        lanes = make_lanes(refs, per_task)
        spec = BatchSpec(
            backend=self.backend,  # type: ignore[arg-type]
            source=source,
            source_conn_id=resolved.source_conn_id,
            format=config.format,
            site_id=site_id,
            project_uri=resolved.project_uri,
            digest_bucket=resolved.digest_bucket,
            config=config.to_wire(),
            stack=resolved.stack,
            local_root=resolved.local_root,
            expected_render_seconds=estimate.per_render.wall_seconds
            if estimate.per_render
            else None,
        )
        context["ti"].xcom_push(key=SPEC_KEY, value=spec.dump())
        self._update(
            status="planned",
            estimate=self._estimate_doc(estimate, gate),
            problems=[*self._report.problems, *(i.to_dict() for i in plan.issues)],
            invalid=[
                InvalidLine(line=bad.line, output_key=bad.output_key, error=bad.error_text)
                for bad in plan.invalid
            ],
            rows_parsed=plan.rows_parsed,
        )
        if plan.batch_level_errors or (
            plan.invalid and parse_bool(self.strict, name="strict", default=True)
        ):
            self._update(status="invalid", planned=refs)
            errors = plan.errors
            listing = "\n".join(f"  - {i}" for i in errors[:LOGGED_PROBLEMS])
            more = len(errors) - LOGGED_PROBLEMS
            tail = f"\n  ... and {more} more" if more > 0 else ""
            raise AirflowFailException(
                f"Batch validation failed: {len(errors)} error(s) in {source}\n{listing}{tail}"
            )
        if dry_run:
            self._update(status="dry-run", planned=refs)
            return []
        if gate.blocked:  # the approval task decides; collect_manifest records its answer
            self._update(status="needs-approval")
        return lanes

    def _site(self) -> tuple[Composition, str]:
        """The composition and siteId: from the project directory, or from a site already
        deployed (checked to exist before anything else happens)."""
        project, site = optional_text(self.project_dir), optional_text(self.site_id)
        self.guard("project_dir", project)
        if project and site:
            raise ValueError(
                f"give project_dir or site_id, not both (got {project!r} and {site!r})"
            )
        if not site:
            if not project:
                raise ValueError("give project_dir (the HyperFrames project) or site_id")
            return load_project(project)
        site_id = validate_site_id(site)
        backend = self.render_backend()
        if backend.find_site(site_id) is None:
            raise FileNotFoundError(
                f"site {site_id} is not deployed: {backend.site_key(site_id)} does not exist "
                "(deploy it first: hyperframes-airflow deploy PROJECT_DIR)"
            )
        self._update(site_id=site_id)
        try:
            return backend.site_composition(site_id), site_id
        except (DeployedSiteError, OSError) as exc:
            strict = parse_bool(self.strict_variables, name="strict_variables", default=False)
            issue = Issue(
                None,
                "site_id",
                "error" if strict else "warning",
                f"cannot read the composition of site {site_id} ({exc}); its variables and "
                "duration are unknown",
            )
            self._report = self._report.problem(issue)
            if strict:
                raise AirflowFailException(issue.message) from exc
            self.log.warning("%s", issue)
            return Composition(duration_unknown_reason=issue.message), site_id

    def _rerun_manifest(self, conn_id: str | None) -> tuple[str, Manifest] | None:
        """`rerun_of`'s manifest (None when blank); a missing or unreadable one fails."""
        uri = str(self.rerun_of or "").strip()
        if not uri or uri == "None":
            return None
        self.guard("rerun_of", uri, own_root=True)
        text = read_text(uri, conn_id=conn_id)
        if text is None:
            raise AirflowFailException(f"rerun_of: no manifest at {uri}")
        try:
            return uri, Manifest.model_validate_json(text)
        except ValueError as exc:
            raise AirflowFailException(f"rerun_of: {uri} is not a HyperFrames manifest") from exc

    def _update(self, **changes: Any) -> None:
        self._report = self._report.model_copy(update=changes)

    # -- steps ----------------------------------------------------------------------------------

    def _estimate(
        self, plan: BatchPlan, composition: Composition, config: RenderConfig, resolved: Resolved
    ) -> BatchEstimate:
        return estimate_batch(
            rows=len(plan.rows),
            config=config,
            duration_s=composition.duration_s,
            duration_unknown_reason=composition.duration_unknown_reason,
            memory_mb=resolved.stack.lambda_memory_mb if resolved.stack else DEFAULT_MEMORY_MB,
        )

    def _rows_per_task(self, renderable: int) -> int:
        """`rows_per_task`, else 1 unless the batch has more rows than Airflow maps
        (`[core] max_map_length`): then the fewest consecutive rows per task that fit."""
        limit = conf.getint("core", "max_map_length", fallback=1024)
        needed = max(1, math.ceil(renderable / limit))
        return max(self.rows_per_task or 1, needed)

    def _estimate_doc(self, estimate: BatchEstimate, gate: GateDecision) -> dict[str, Any]:
        """The estimate as the manifest shows it, with the gate's decision."""
        doc: dict[str, Any] = estimate.model_dump(by_alias=True)
        doc["gate"] = gate.model_dump(by_alias=True)
        if not self.render_backend().bills_renders:
            doc["note"] = (
                "local backend: renders on this worker, no cloud cost "
                "(Lambda figures shown for reference)"
            )
        return doc

    def _log_plan(self, plan: BatchPlan, estimate: BatchEstimate, gate: GateDecision) -> None:
        self.log.info(
            "Batch: %d row(s) parsed, %d renderable, %d invalid, %d warning(s)",
            plan.rows_parsed,
            len(plan.rows),
            len(plan.invalid),
            len(plan.warnings),
        )
        for issue in plan.issues[:LOGGED_PROBLEMS]:
            log = self.log.error if issue.severity == "error" else self.log.warning
            log("%s", issue)
        self.log.info("Cost: %s (%s)", gate.message, gate.status)

    def _cost_gate(self, estimate: BatchEstimate) -> GateDecision:
        """Whether the batch may render at its estimated cost (renders that bill only)."""
        limit = parse_cost_limit(self.max_cost_usd)
        if not self.render_backend().bills_renders:
            limit = None
        confirmed = parse_bool(self.confirm_cost, name="confirm_cost", default=False)
        return cost_gate(estimate, max_cost_usd=limit, confirmed=confirmed)


def _explain(exc: BaseException) -> str:
    """One line for the manifest: the error's own message (never a traceback)."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, AirflowFailException | ValueError | OSError | InvalidConfigError):
        return text
    return f"{type(exc).__name__}: {text}"
