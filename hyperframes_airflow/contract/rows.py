"""A row's trip through Airflow, as data: planned in a lane, rendering, then a manifest row.

`prepare_batch` plans every valid line as a `RowRef` (where the line is and what it must hash
to, never its variables) and groups them into lanes, one lane per render task instance. The
facts every render of the batch shares travel once, as a `BatchSpec`; what the manifest needs
about the batch as a whole is a `BatchReport`. While a row renders it is a `RenderAttempt`
(which execution, which attempt); when it ends it is a `ManifestRow` (contract/manifest.py),
which is also the one shape a render task's result has (`decode_rows`).

Variables never appear in any of these: they are personal data and stay in the batch file,
read again by the render itself (`contract.batch.read_row_at`) and checked against `digest`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from hyperframes_airflow.contract.batch import Format
from hyperframes_airflow.contract.issues import Issue
from hyperframes_airflow.contract.manifest import ManifestRow, RerunOf

__all__ = [
    "DIGEST_CHARS",
    "BatchReport",
    "BatchSpec",
    "InvalidLine",
    "LambdaStack",
    "Lane",
    "RenderAttempt",
    "RowRef",
    "decode_rows",
    "lane_label",
    "make_lanes",
]

#: Hex characters of the render digest kept per row: enough to tell a changed line (2^-64).
DIGEST_CHARS = 16


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready form stored in XCom and trigger kwargs (camelCase, no None)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class RowRef(_Model):
    """One planned row: its physical line, where that line starts in the batch source, the
    digest its render input must have, and its output key (shown in the grid)."""

    line: int
    offset: int
    digest: str
    output_key: str


class Lane(_Model):
    """The rows one render task instance renders, one after the other (usually one)."""

    rows: list[RowRef]

    @property
    def label(self) -> str:
        return lane_label([r.output_key for r in self.rows])

    def side_by_side(self, width: int) -> list[Lane]:
        """The lane as `width` lanes that render at once (a task holding `width` pool slots):
        row i goes to lane i mod width, so the first `width` rows start together."""
        if width < 1:
            raise ValueError(f"renders at once must be >= 1; got {width}")
        return [Lane(rows=self.rows[i::width]) for i in range(min(width, len(self.rows)))]


def lane_label(output_keys: Sequence[str]) -> str:
    """What the grid shows for a render task: its output key, or the first and a count."""
    if not output_keys:
        return "-"
    first = output_keys[0]
    return first if len(output_keys) == 1 else f"{first} (+{len(output_keys) - 1} more)"


def make_lanes(rows: Sequence[RowRef], per_lane: int) -> list[Lane]:
    """Consecutive rows, `per_lane` at a time (the last lane may be shorter)."""
    if per_lane < 1:
        raise ValueError(f"rows per lane must be >= 1; got {per_lane}")
    return [Lane(rows=list(rows[i : i + per_lane])) for i in range(0, len(rows), per_lane)]


class LambdaStack(_Model):
    """The render stack, resolved once by prepare_batch so no render looks it up again."""

    bucket_name: str
    state_machine_arn: str
    region: str | None = None
    lambda_memory_mb: int = 10240


class BatchSpec(_Model):
    """What every render of one batch shares: pushed once, read by each render task.

    `config` is the wire Config without variables; `project_uri` is where the site is (an
    `s3://` tarball for Lambda, a `file://` directory for local renders). `source` and
    `source_conn_id` say where the batch lines are, for renders to read their own.
    """

    backend: Literal["lambda", "local"]
    source: str
    source_conn_id: str | None = None
    format: Format = "mp4"
    site_id: str
    project_uri: str
    digest_bucket: str
    """The bucket name the render digests were computed with (the stack's, or a sizing stand-in)."""
    config: dict[str, Any]
    stack: LambdaStack | None = None
    local_root: str | None = None
    expected_render_seconds: float | None = None
    """The estimate's wall time of one render, for the watcher's schedule (None: unknown)."""


class InvalidLine(_Model):
    """A line that will not render, with every reason (no variable values)."""

    line: int
    output_key: str | None = None
    error: str


class BatchReport(_Model):
    """What the manifest needs about the batch as a whole; written by prepare_batch on every
    path (also when it fails), so the manifest can always say why nothing rendered.

    `planned` holds the planned rows only when no render tasks were mapped (dry run, strict
    validation failed): otherwise the rows are the mapping itself. `needs-approval`: planned and
    mapped, but above `max_cost_usd` unconfirmed, so the approval task decides
    (`contract.assemble.settle_report` turns its answer into `planned` or `over-budget`).
    """

    status: Literal["planned", "needs-approval", "dry-run", "invalid", "over-budget", "failed"]
    backend: str
    source: str
    site_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = Field(default_factory=list)
    invalid: list[InvalidLine] = Field(default_factory=list)
    planned: list[RowRef] = Field(default_factory=list)
    rows_parsed: int = 0
    rerun_of: RerunOf | None = None
    """Set when this run renders another run's failed rows (`prepare_batch(rerun_of=...)`)."""

    @property
    def rendered(self) -> bool:
        return self.status == "planned"

    def problem(self, issue: Issue) -> BatchReport:
        """A copy with one more problem."""
        return self.model_copy(update={"problems": [*self.problems, issue.to_dict()]})


class RenderAttempt(_Model):
    """A row while it renders: which execution (or local render) is its render now."""

    line: int
    output_key: str
    execution_name: str
    execution_arn: str | None = None
    attempt: int = 1
    started_at: str | None = None


def decode_rows(value: Any) -> list[ManifestRow]:
    """A render task's result: a list of manifest rows (as stored in XCom).

    Accepts the JSON text form too: some Airflow paths hand XCom values back encoded.
    """
    if value is None:
        return []
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, Iterable):
        return []
    return [ManifestRow.model_validate(item) for item in value if isinstance(item, dict)]
