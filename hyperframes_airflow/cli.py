"""`hyperframes-airflow`: check a batch before it reaches Airflow, and check this machine.

hyperframes-airflow validate PROJECT_DIR BATCH [--strict-variables] [--format F] [--json]
hyperframes-airflow validate --site-id ID [--conn-id C | --local-root DIR] BATCH ...
hyperframes-airflow estimate PROJECT_DIR BATCH [--width W --height H --fps F ...]
                             [--output-resolution PRESET] [--max-cost-usd USD] [--json]
    exit 0: estimated (within --max-cost-usd when given); 1: cost unknown (the composition's
    length is only known when rendered) or above --max-cost-usd; 2: bad arguments
hyperframes-airflow site-id PROJECT_DIR
hyperframes-airflow deploy PROJECT_DIR [--conn-id C | --local-root DIR]   (prints the siteId)
hyperframes-airflow doctor [--pool NAME]
hyperframes-airflow rerun-failed MANIFEST -o ROWS.jsonl [--batch BATCH] [--conn-id ID]
    the manifest's failed, aborted and timed-out rows as a new batch, read from the original
    batch (variables never come from a manifest); exit 1 when some could not be found there
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from hyperframes_airflow.contract.batch import (
    FORMAT_EXTENSIONS,
    BatchSourceError,
    local_batch_problem,
)
from hyperframes_airflow.contract.composition import Composition
from hyperframes_airflow.contract.config import OUTPUT_RESOLUTIONS, InvalidConfigError, RenderConfig
from hyperframes_airflow.contract.estimate import cost_gate, estimate_batch
from hyperframes_airflow.contract.issues import Issue
from hyperframes_airflow.contract.options import parse_cost_limit
from hyperframes_airflow.contract.plan import BatchPlan, load_project, plan_batch
from hyperframes_airflow.contract.stack import DEFAULT_CONN_ID

FORMATS = tuple(FORMAT_EXTENSIONS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (FileNotFoundError, NotADirectoryError, InvalidConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperframes-airflow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser(
        "validate", help="check every row of a batch; exit 1 if it would not render"
    )
    _batch_args(validate)
    validate.add_argument(
        "--strict-variables",
        action="store_true",
        help="variables that do not match the composition are errors, not warnings",
    )
    validate.add_argument("--format", choices=FORMATS, default="mp4")
    validate.add_argument("--json", action="store_true", help="print one JSON document")
    validate.set_defaults(func=cmd_validate)

    estimate = sub.add_parser("estimate", help="pre-flight Lambda cost estimate for a batch")
    _batch_args(estimate)
    estimate.add_argument("--width", type=int)
    estimate.add_argument("--height", type=int)
    estimate.add_argument("--fps", type=int)
    estimate.add_argument("--format", choices=FORMATS, default="mp4")
    estimate.add_argument(
        "--output-resolution",
        choices=OUTPUT_RESOLUTIONS,
        help="render at this preset's size (the composition is supersampled to it)",
    )
    estimate.add_argument("--memory-mb", type=int, default=10240)
    estimate.add_argument(
        "--max-cost-usd",
        help="apply the cost gate: exit 1 when the estimate is above this, or unknown",
    )
    estimate.add_argument("--json", action="store_true")
    estimate.set_defaults(func=cmd_estimate)

    deploy = sub.add_parser(
        "deploy", help="upload a project as a site once (what CI runs); prints its siteId"
    )
    deploy.add_argument("project_dir", type=Path, help="HyperFrames project (contains index.html)")
    _site_target_args(deploy)
    deploy.set_defaults(func=cmd_deploy)

    site = sub.add_parser("site-id", help="print the siteId the Node SDK would compute")
    site.add_argument("project_dir", type=Path)
    site.set_defaults(func=cmd_site_id)

    pools = sub.add_parser(
        "pools", help="create or resize the render pool so it counts deferred renders"
    )
    pools.add_argument("--name", default="hyperframes_renders")
    pools.add_argument(
        "--slots", type=int, required=True, help="running renders allowed across all DAG runs"
    )
    pools.set_defaults(func=cmd_pools)

    doctor = sub.add_parser("doctor", help="check the local render toolchain and the Airflow pool")
    doctor.add_argument("--pool", default="hyperframes_renders")
    doctor.add_argument("--skip-airflow", action="store_true", help="only check the renderer")
    doctor.set_defaults(func=cmd_doctor)

    rerun = sub.add_parser(
        "rerun-failed", help="write a manifest's rows that did not succeed as a new batch"
    )
    rerun.add_argument("manifest", help="the run's manifest: a path, file:// or s3:// URI")
    rerun.add_argument("-o", "--output", type=Path, required=True, help="the batch to write")
    rerun.add_argument(
        "--batch", help="where the original batch is now (default: the manifest's batchSource)"
    )
    rerun.add_argument(
        "--conn-id", default=None, help="Airflow connection for s3:// manifests and batches"
    )
    rerun.set_defaults(func=cmd_rerun_failed)
    return parser


def _batch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="[PROJECT_DIR] BATCH",
        help="the HyperFrames project (unless --site-id) and the JSONL batch",
    )
    parser.add_argument(
        "--site-id", help="a site already deployed: read its composition from the site itself"
    )
    _site_target_args(parser)


def _site_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conn-id",
        default=DEFAULT_CONN_ID,
        help="the Airflow aws connection of the Lambda stack (default hyperframes_default)",
    )
    parser.add_argument("--local-root", help="the local backend's root instead of a Lambda stack")


def _site_backend(args: argparse.Namespace) -> Any:
    from hyperframes_airflow.backends import make_backend

    if args.local_root:
        return make_backend("local", local_root=args.local_root)
    return make_backend("lambda", aws_conn_id=args.conn_id)


def _project_and_batch(args: argparse.Namespace) -> tuple[Composition, str, Path]:
    """(composition, siteId, batch) from `PROJECT_DIR BATCH`, or `--site-id ID BATCH`."""
    from hyperframes_airflow.contract.deployed_site import validate_site_id

    if args.site_id:
        if len(args.paths) != 1:
            raise ValueError("with --site-id give only the batch (no project directory)")
        site_id = validate_site_id(args.site_id)
        with contextlib.redirect_stdout(sys.stderr):  # Airflow logs: keep --json output clean
            backend = _site_backend(args)
            if backend.find_site(site_id) is None:
                raise FileNotFoundError(
                    f"site {site_id} is not deployed: {backend.site_key(site_id)}"
                )
            composition = backend.site_composition(site_id)
        return composition, site_id, args.paths[0]
    if len(args.paths) != 2:
        raise ValueError("give PROJECT_DIR and BATCH (or --site-id ID and BATCH)")
    composition, site_id = load_project(args.paths[0])
    return composition, site_id, args.paths[1]


def _config_for(comp: Composition, args: argparse.Namespace) -> RenderConfig:
    """Flags win; otherwise the composition's own size and fps (what the render would use)."""
    return RenderConfig(
        width=getattr(args, "width", None) or comp.width or 1920,
        height=getattr(args, "height", None) or comp.height or 1080,
        fps=getattr(args, "fps", None) or comp.fps or 30,
        format=args.format,
        output_resolution=getattr(args, "output_resolution", None),
    )


def _plan(args: argparse.Namespace, strict_variables: bool) -> tuple[BatchPlan, RenderConfig]:
    composition, site_id, batch = _project_and_batch(args)
    config = _config_for(composition, args)
    with _open_batch(batch) as handle:
        plan = plan_batch(
            handle,
            config=config,
            composition=composition,
            site_id=site_id,
            dag_id="cli",
            run_id="validate",
            strict_variables=strict_variables,
        )
    return plan, config


def _open_batch(path: Path) -> BinaryIO:
    """Open the batch for reading, or raise `BatchSourceError` (printed as one `error:` line):
    checked with `stat` first, since opening a FIFO would block and a directory or device is
    no batch."""
    problem = local_batch_problem(path)
    if problem:
        raise BatchSourceError(problem)
    try:
        return path.open("rb")
    except OSError as exc:  # it changed since the check, or the file system said no
        raise BatchSourceError(
            f"batch file cannot be read ({exc.strerror or type(exc).__name__}): {path}"
        ) from exc


def cmd_validate(args: argparse.Namespace) -> int:
    plan, _ = _plan(args, args.strict_variables)
    valid = not plan.errors
    if args.json:
        print(
            json.dumps(
                {
                    "valid": valid,
                    "rows": plan.rows_parsed,
                    "issues": [i.to_dict() for i in plan.issues],
                }
            )
        )
    else:
        _print_issues(plan.issues)
        verdict = "OK: the batch would render" if valid else "FAILED: the batch would not render"
        print(
            f"{verdict} ({plan.rows_parsed} row(s), {len(plan.rows)} renderable, "
            f"{len(plan.errors)} error(s), {len(plan.warnings)} warning(s))"
        )
    return 0 if valid else 1


def _print_issues(issues: list[Issue]) -> None:
    for issue in issues:
        where = f"line {issue.line}" if issue.line is not None else "batch"
        field = f" [{issue.field}]" if issue.field else ""
        print(f"{issue.severity.upper():7} {where}{field}: {issue.message}")


def cmd_estimate(args: argparse.Namespace) -> int:
    limit = parse_cost_limit(args.max_cost_usd, name="--max-cost-usd")
    plan, config = _plan(args, False)
    comp = plan.composition or Composition()
    est = estimate_batch(
        rows=len(plan.rows),
        config=config,
        duration_s=comp.duration_s,
        duration_unknown_reason=comp.duration_unknown_reason,
        memory_mb=args.memory_mb,
    )
    gate = cost_gate(est, max_cost_usd=limit, confirmed=False)
    code = 0 if est.known and not gate.blocked else 1
    if args.json:
        data: dict[str, Any] = est.model_dump(by_alias=True)
        data["gate"] = gate.model_dump(by_alias=True)
        print(json.dumps(data))
        return code
    if not est.known:
        print(f"cost unknown: {est.reason}")
        if limit is not None:
            print(gate.message)
        return code
    for key, value in est.model_dump(by_alias=True).items():
        if key in ("known", "reason"):
            continue
        if isinstance(value, list):
            print(f"{key}:")
            for line in value:
                print(f"  - {line}")
        elif isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    if plan.errors:
        print(
            f"note: {len(plan.errors)} error(s) in the batch; invalid rows are not counted "
            "(run `validate` for details)"
        )
    if limit is not None:
        print(f"cost gate: {gate.status}: {gate.message}")
    return code


def cmd_deploy(args: argparse.Namespace) -> int:
    """Upload the project as `sites/<siteId>/` unless it is there already; print the siteId."""
    from hyperframes_airflow.contract.site import require_entry_file, site_id

    require_entry_file(args.project_dir)
    sid = site_id(args.project_dir)
    with contextlib.redirect_stdout(sys.stderr):  # Airflow logs: stdout is the siteId alone
        handle = _site_backend(args).deploy_site(args.project_dir, sid)
    verb = "uploaded" if handle.uploaded else "already deployed"
    print(f"{sid}  ({verb}: {handle.project_uri}, {handle.bytes} bytes)", file=sys.stderr)
    print(sid)
    return 0


def cmd_site_id(args: argparse.Namespace) -> int:
    from hyperframes_airflow.contract.site import site_id

    print(site_id(args.project_dir))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from hyperframes_airflow.backends.local_cli import find_toolchain

    problems = list(find_toolchain().problems())
    if not args.skip_airflow:
        problems.extend(_pool_problems(args.pool))
    if not problems:
        checked = "local renderer" if args.skip_airflow else "local renderer and Airflow pool"
        print(f"OK: {checked} ready")
        return 0
    for what, fix in problems:
        print(f"MISSING {what}\n   fix: {fix}")
    return 1


def cmd_pools(args: argparse.Namespace) -> int:
    """Same as `airflow pools set NAME SLOTS DESC --include-deferred`, with a check after."""
    from airflow.models import Pool

    if args.slots < 1:
        print("error: --slots must be >= 1", file=sys.stderr)
        return 2
    Pool.create_or_update_pool(
        name=args.name,
        slots=args.slots,
        description="HyperFrames renders (deferred renders hold their slot)",
        include_deferred=True,
    )
    problems = _pool_problems(args.name)
    if problems:
        for what, fix in problems:
            print(f"MISSING {what}\n   fix: {fix}")
        return 1
    print(f"pool {args.name!r}: {args.slots} slot(s), counting deferred renders")
    return 0


def _pool_problems(pool: str) -> list[tuple[str, str]]:
    fix = f'airflow pools set {pool} 4 "HyperFrames renders" --include-deferred'
    try:
        from airflow.models import Pool
        from airflow.utils.session import create_session

        with create_session() as session:
            found = session.query(Pool).filter(Pool.pool == pool).one_or_none()
    except Exception as exc:  # no DB configured or reachable: say so, with the fix
        return [(f"Airflow metadata DB not reachable ({type(exc).__name__})", "airflow db migrate")]
    if found is None:
        return [(f"Airflow pool {pool!r} (render tasks would wait forever)", fix)]
    if not found.include_deferred:
        return [
            (f"pool {pool!r} does not count deferred tasks, so it cannot cap running renders", fix)
        ]
    return []


if __name__ == "__main__":
    raise SystemExit(main())


def cmd_rerun_failed(args: argparse.Namespace) -> int:
    """The rows a run did not render, as a batch: same lines' rows, same output keys."""
    from hyperframes_airflow.contract.batch import parse_batch
    from hyperframes_airflow.contract.manifest import Manifest
    from hyperframes_airflow.contract.rerun import batch_jsonl, rerun_targets, select_rows
    from hyperframes_airflow.storage import open_batch, read_text

    text = read_text(args.manifest, conn_id=args.conn_id)
    if text is None:
        raise FileNotFoundError(f"no manifest at {args.manifest}")
    manifest = Manifest.model_validate_json(text)
    targets = rerun_targets(manifest)
    source = args.batch or manifest.batch_source
    with open_batch(source, args.conn_id) as handle:
        rows = parse_batch(handle).rows
    kept, issues = select_rows(rows, targets)
    args.output.write_text(batch_jsonl(kept), encoding="utf-8")
    lines = ", ".join(str(row.line) for row in kept) or "none"
    print(
        f"wrote {len(kept)} of {len(targets)} row(s) that did not succeed in run "
        f"{manifest.run_id} to {args.output} (lines {lines} of {source})",
        file=sys.stderr,
    )
    _print_issues(issues)
    return 1 if issues else 0
