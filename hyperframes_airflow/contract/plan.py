"""Turn a parsed batch into a render plan: every row checked, named and sized before any call.

This is the single place that decides which rows render. The CLI's `validate`/`estimate` and the
`prepare_batch` task both use it, so what the CLI accepts is exactly what Airflow will render.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperframes_airflow.contract.batch import BatchRow, parse_batch
from hyperframes_airflow.contract.composition import Composition, read_composition
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.execution import (
    ExecutionInputTooLarge,
    attempt_name,
    execution_name,
)
from hyperframes_airflow.contract.issues import Issue, Severity
from hyperframes_airflow.contract.row_input import RowInputs
from hyperframes_airflow.contract.rows import DIGEST_CHARS, RowRef
from hyperframes_airflow.contract.variables import validate_variables

#: Bucket name used to size the execution input when no real bucket is known (local, CLI).
#: 63 characters is the longest S3 bucket name, so a row that fits here fits on any stack.
SIZING_BUCKET = "b" * 63


@dataclass(frozen=True)
class PlannedRow:
    """A row that will render: its identity (line, key), its deterministic name and digest."""

    line: int
    output_key: str
    execution_name: str
    input_digest: str
    variables: Mapping[str, Any]
    input_bytes: int
    offset: int | None = None

    def ref(self) -> RowRef:
        """What a render task is given for this row (no variables: it reads them itself)."""
        if self.offset is None:
            raise ValueError(f"line {self.line} has no byte offset (read the batch in binary)")
        return RowRef(
            line=self.line,
            offset=self.offset,
            digest=self.input_digest[:DIGEST_CHARS],
            output_key=self.output_key,
        )


@dataclass(frozen=True)
class InvalidRow:
    """A row that will not render, with every reason (safe to show: no variable values)."""

    line: int
    output_key: str | None
    errors: list[Issue]

    @property
    def error_text(self) -> str:
        return "; ".join(i.message for i in self.errors)


@dataclass
class BatchPlan:
    rows: list[PlannedRow] = field(default_factory=list)
    invalid: list[InvalidRow] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    site_id: str | None = None
    composition: Composition | None = None

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def rows_parsed(self) -> int:
        return len(self.rows) + len(self.invalid)

    @property
    def batch_level_errors(self) -> list[Issue]:
        return [i for i in self.errors if i.line is None]


def plan_batch(
    source: Iterable[str] | Iterable[bytes],
    *,
    config: RenderConfig,
    composition: Composition,
    site_id: str,
    dag_id: str,
    run_id: str,
    strict_variables: bool = False,
    bucket: str = SIZING_BUCKET,
    strict: bool = False,
) -> BatchPlan:
    """Validate every row (structure, variables, input size) and name each renderable one.

    `strict` is `parse_batch`'s: unknown row fields are errors (the row is invalid), not warnings.
    """
    parsed = parse_batch(source, format=config.format, strict=strict)
    plan = BatchPlan(site_id=site_id, composition=composition)
    plan.issues.extend(parsed.issues)
    invalid_by_line: dict[int, InvalidRow] = {
        r.line: InvalidRow(r.line, r.output_key, list(r.errors)) for r in parsed.rejected
    }
    # The Config is validated and encoded once; each row only adds its variables, last.
    inputs = RowInputs(base_wire=config.to_wire(), bucket=bucket, site_id=site_id)
    for row in parsed.rows:
        row_issues = _variable_issues(row, composition, strict_variables)
        plan.issues.extend(row_issues)
        planned, size_issue = _plan_row(row, inputs, dag_id, run_id)
        if size_issue is not None:
            plan.issues.append(size_issue)
            row_issues.append(size_issue)
        row_errors = [i for i in row_issues if i.severity == "error"]
        if row_errors or planned is None:
            invalid_by_line[row.line] = InvalidRow(row.line, row.output_key, row_errors)
        else:
            plan.rows.append(planned)
    plan.invalid = [invalid_by_line[line] for line in sorted(invalid_by_line)]
    plan.issues.sort(key=lambda i: (i.line is not None, i.line or 0))
    return plan


def _variable_issues(row: BatchRow, composition: Composition, strict: bool) -> list[Issue]:
    if not row.variables:
        return []
    severity: Severity = "error" if strict else "warning"
    return [
        Issue(row.line, "variables", severity, issue.safe_message)
        for issue in validate_variables(row.variables, composition.variables)
    ]


def row_digest(*, base_wire: Mapping[str, Any], bucket: str, site_id: str, row: BatchRow) -> str:
    """sha256 of everything in the row's render input except its name (see `render_digest`)."""
    inputs = RowInputs(base_wire=base_wire, bucket=bucket, site_id=site_id)
    return inputs.digest(
        output_key=row.output_key, variables_json=inputs.variables_json(row.variables)
    )


def row_base_name(row: BatchRow, *, dag_id: str, run_id: str, digest: str) -> str:
    """The row's first execution name: its own `executionName`, else the deterministic one."""
    if row.execution_name:
        return row.execution_name
    return execution_name(dag_id=dag_id, run_id=run_id, row_line=row.line, digest=digest)


def encode_row_input(
    *, base_wire: Mapping[str, Any], bucket: str, site_id: str, row: BatchRow, name: str
) -> str:
    """The exact StartExecution input of `row` under `name`; raises past 262,144 bytes."""
    inputs = RowInputs(base_wire=base_wire, bucket=bucket, site_id=site_id)
    encoded = inputs.encoded(
        name=name, output_key=row.output_key, variables_json=inputs.variables_json(row.variables)
    )
    inputs.size(encoded)
    return encoded


def _plan_row(
    row: BatchRow, inputs: RowInputs, dag_id: str, run_id: str
) -> tuple[PlannedRow | None, Issue | None]:
    try:
        variables_json = inputs.variables_json(row.variables)
        digest = inputs.digest(output_key=row.output_key, variables_json=variables_json)
        name = attempt_name(row_base_name(row, dag_id=dag_id, run_id=run_id, digest=digest), 1)
        encoded = inputs.encoded(
            name=name, output_key=row.output_key, variables_json=variables_json
        )
        size = inputs.size(encoded)
    except (ExecutionInputTooLarge, ValueError) as exc:
        return None, Issue(row.line, "variables", "error", str(exc))
    planned = PlannedRow(
        row.line, row.output_key, name, digest, row.variables, size, offset=row.offset
    )
    return planned, None


def load_project(project_dir: str | Path) -> tuple[Composition, str]:
    """Read the composition and compute the siteId: both are pure functions of the directory."""
    from hyperframes_airflow.contract.site import require_entry_file, site_id

    path = Path(project_dir)
    require_entry_file(path)
    return read_composition(path), site_id(path)
