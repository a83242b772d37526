"""The completion manifest: one document per DAG run, one row per input line, in input order.

It is what users open after a batch, so it says for every line what happened and where the
output is. It never carries the rows' variables: they are personal data.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from hyperframes_airflow.contract.approval import Approval

RowStatus = Literal[
    "succeeded",
    "failed",
    "timed-out",
    "aborted",
    "failed-to-start",
    "invalid",
    "would-invoke",
    "skipped",
]
ROW_STATUSES: tuple[RowStatus, ...] = get_args(RowStatus)
#: Statuses that do not make a run fail: the row rendered, or it was never meant to.
OK_STATUSES: frozenset[str] = frozenset({"succeeded", "would-invoke"})

#: Step Functions execution status -> manifest row status.
SFN_STATUS_TO_ROW: dict[str, RowStatus] = {
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "TIMED_OUT": "timed-out",
    "ABORTED": "aborted",
}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ManifestRow(_Model):
    """What happened to one input line."""

    input_line: int
    output_key: str | None
    status: RowStatus
    output_uri: str | None = None
    execution_name: str | None = None
    execution_arn: str | None = None
    error: str | None = None
    cause: str | None = None
    frames: int | None = None
    bytes: int | None = None
    cost_usd: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    attempt: int | None = None
    """Which render of this row this is: 1, then one more each time it is rendered again."""
    thumbnail_uri: str | None = None
    """A poster frame of the output, stored beside it (local renders)."""
    replaced: str | None = None
    """When the output key already held another run's render: whose (its execution name)."""


class RerunOf(_Model):
    """The run a rerun repeats, as the rerun's manifest records it (its lines are that
    batch's lines: `inputLine` of every row refers to the same source)."""

    manifest_uri: str
    dag_id: str
    run_id: str
    batch_source: str
    lines: list[int]


class ManifestTotals(_Model):
    rows: int
    by_status: dict[str, int]
    succeeded: int
    not_succeeded: int
    actual_cost_usd: float


class Manifest(_Model):
    """The whole run: where the batch came from, what was deployed, what it cost, every row."""

    version: Literal[1] = 1
    dag_id: str
    run_id: str
    backend: str
    batch_source: str
    site_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    estimate: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = Field(default_factory=list)
    approval: Approval | None = None
    """What the cost gate decided, and who (absent when no limit applied)."""
    rerun_of: RerunOf | None = None
    """Set on a run of another run's failed rows: which run, which of its lines."""
    totals: ManifestTotals | None = None
    rows: list[ManifestRow] = Field(default_factory=list)
    written_at: str | None = None

    def with_totals(self) -> Manifest:
        """Return a copy whose totals are recomputed from the rows."""
        counts: Counter[str] = Counter(row.status for row in self.rows)
        cost = sum(row.cost_usd or 0.0 for row in self.rows)
        ok = sum(counts[s] for s in OK_STATUSES)
        totals = ManifestTotals(
            rows=len(self.rows),
            by_status={s: counts[s] for s in ROW_STATUSES if counts[s]},
            succeeded=counts["succeeded"],
            not_succeeded=len(self.rows) - ok,
            actual_cost_usd=round(cost, 6),
        )
        return self.model_copy(update={"totals": totals})

    @property
    def failed_rows(self) -> list[ManifestRow]:
        return [row for row in self.rows if row.status not in OK_STATUSES]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"

    def summary_table(self) -> str:
        """A compact, log-friendly table: line, status, output key, error."""
        header = f"{'line':>6}  {'status':<15}  output"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            tail = f"  ({row.error})" if row.error else ""
            lines.append(f"{row.input_line:>6}  {row.status:<15}  {row.output_key or '-'}{tail}")
        return "\n".join(lines)
