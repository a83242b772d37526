"""Parse and validate a JSONL batch of render rows, streaming, reporting every problem at once.

Mirrors the Node CLI's `lambda render-batch` parsing (contract §7.1: same trimming, same physical
line numbers, same message headlines) and adds the checks the Node SDK skips (unsafe keys, format
extensions, duplicates, execution-name rules, unknown fields, values Node would read
differently), so a bad batch fails before anything is deployed or started. Unlike the Node CLI it
does not stop at the first bad line: users fix a batch in one go.

Reading is bounded (`batch_source`: line, row, total-size and rejected-line limits); one line's
fields are read in `row_fields`, its key checked in `output_keys`, its variables' values in
`json_values`; this module holds the results and what compares rows. Messages name the
physical line and the field and never contain a variable's value (values are personal data).
Pure Python (no Airflow import) so the CLI, the operators and the tests share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from pydantic import BaseModel, ConfigDict, Field

from hyperframes_airflow.contract._js import JS_TRIM_CHARS
from hyperframes_airflow.contract.batch_source import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_REJECTED_ROWS,
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_TOTAL_BYTES,
    BatchLimits,
    BatchSourceError,
    LineContent,
    LongLine,
    Undecodable,
    local_batch_problem,
    physical_lines,
)
from hyperframes_airflow.contract.execution import MAX_EXECUTION_NAME_LENGTH
from hyperframes_airflow.contract.formats import (
    FORMAT_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Format,
    format_extension,
)
from hyperframes_airflow.contract.issues import BatchValidationError, Issue, Severity
from hyperframes_airflow.contract.json_values import MAX_VARIABLES_DEPTH
from hyperframes_airflow.contract.output_keys import (
    DEFAULT_RESERVED_PREFIXES,
    MAX_PATH_SEGMENT_BYTES,
    MAX_S3_KEY_BYTES,
    OutputKeyRegistry,
    output_key_issues,
    quote_key,
    reserved_prefix_bases,
)
from hyperframes_airflow.contract.row_fields import (
    BATCH_FIELDS,
    decode_row_object,
    error_issue,
    has_unknown_fields,
    invalid_json,
    may_hold_lone_surrogate,
    read_execution_name,
    read_output_key,
    read_variables,
    unknown_field_issues,
)

__all__ = [
    "BATCH_FIELDS",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_REJECTED_ROWS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_MAX_TOTAL_BYTES",
    "DEFAULT_RESERVED_PREFIXES",
    "EXECUTION_NAME_MAX_LENGTH",
    "FORMAT_EXTENSIONS",
    "MAX_PATH_SEGMENT_BYTES",
    "MAX_S3_KEY_BYTES",
    "MAX_VARIABLES_DEPTH",
    "VIDEO_EXTENSIONS",
    "BatchLimits",
    "BatchParseResult",
    "BatchRow",
    "BatchSourceError",
    "Format",
    "RejectedRow",
    "local_batch_problem",
    "parse_batch",
    "parse_batch_file",
    "read_row_at",
]

#: Kept under its old name; the rule itself lives in `execution.py`.
EXECUTION_NAME_MAX_LENGTH: Final = MAX_EXECUTION_NAME_LENGTH


class BatchRow(BaseModel):
    """One valid batch line: what a single render needs, nothing else (no raw line kept)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    line: int
    """1-based physical line in the batch file, for messages and the manifest."""
    offset: int | None = None
    """Byte offset of the line's first byte in a binary source (None for text sources): where a
    render task reads its own row again, so variables never travel through Airflow."""
    output_key: str = Field(alias="outputKey")
    variables: dict[str, Any] = Field(default_factory=dict)
    execution_name: str | None = Field(default=None, alias="executionName")


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A line that must not render. `output_key` is the line's string outputKey, if it had one,
    so the manifest can still name the object the user expected."""

    line: int
    output_key: str | None
    errors: list[Issue]


@dataclass(slots=True)
class BatchParseResult:
    """Valid rows and rejected lines (each in input order) plus every issue in line order."""

    rows: list[BatchRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def ok(self) -> bool:
        """True when nothing blocks rendering (warnings allowed)."""
        return not any(i.severity == "error" for i in self.issues)

    def raise_for_errors(self, *, summary: str = "Batch validation failed") -> None:
        """Raise `BatchValidationError` carrying every issue, for strict callers."""
        if not self.ok:
            raise BatchValidationError(self.issues, summary=summary)


def parse_batch(
    source: Iterable[str] | Iterable[bytes],
    *,
    format: Format = "mp4",
    reserved_prefixes: tuple[str, ...] = DEFAULT_RESERVED_PREFIXES,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_rejected_rows: int = DEFAULT_MAX_REJECTED_ROWS,
) -> BatchParseResult:
    """Validate a JSONL batch line by line, keeping only the valid rows in memory.

    `source` is a file object (binary is best: lines split on `\\n` only, exactly like the Node
    CLI, and each row knows its byte offset; it is read in bounded pieces) or any iterable of
    lines, e.g. a list of strings. An item holding several `\\n`-separated lines counts as several
    physical lines. Bytes must be UTF-8.

    `strict` makes unknown fields errors (the row is rejected) instead of warnings. Reading stops
    with one batch-level error past `max_total_bytes` (default 2 GiB), `max_rows` rows (default
    1,000,000) or `max_rejected_rows` rejected lines (default 1,000: the input is most likely not
    a batch); a line over `max_line_bytes` (default 1 MiB; no longer line can fit the
    262,144-byte Step Functions input) is rejected without being held in memory.
    """
    limits = BatchLimits(max_line_bytes, max_rows, max_total_bytes, max_rejected_rows)
    checker = _Checker(format, reserved_prefixes, strict, limits)
    for lineno, offset, content in physical_lines(source, limits):
        if type(content) is str:  # the usual line, without the dispatch of `take`
            checker.check_line(lineno, content, offset)
        else:
            checker.take(lineno, offset, content)
        if checker.stopped:
            break
    return checker.finish()


def parse_batch_file(
    path: str | os.PathLike[str],
    *,
    format: Format = "mp4",
    reserved_prefixes: tuple[str, ...] = DEFAULT_RESERVED_PREFIXES,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_rejected_rows: int = DEFAULT_MAX_REJECTED_ROWS,
) -> BatchParseResult:
    """Parse a batch file from disk, streaming (see `parse_batch` for the keywords).

    Opened in binary mode so lines split on `\\n` only (CRLF's `\\r` is trimmed, a lone `\\r` is
    not a line break), as in Node; a UTF-8 BOM is trimmed like JS `trim()` does. Raises
    `BatchSourceError` (one line, no traceback needed) for a path that is not a readable regular
    file: a directory, a FIFO (which would block), a device.
    """
    problem = local_batch_problem(path)
    if problem:
        raise BatchSourceError(problem)
    with open(path, "rb") as fh:
        return parse_batch(
            fh,
            format=format,
            reserved_prefixes=reserved_prefixes,
            strict=strict,
            max_line_bytes=max_line_bytes,
            max_rows=max_rows,
            max_total_bytes=max_total_bytes,
            max_rejected_rows=max_rejected_rows,
        )


def read_row_at(
    source: BinaryIO,
    *,
    offset: int,
    line: int,
    format: Format = "mp4",
    reserved_prefixes: tuple[str, ...] = DEFAULT_RESERVED_PREFIXES,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> BatchRow | RejectedRow:
    """Read and check the one row that starts at byte `offset` of a seekable binary source.

    A render task calls this with the position `prepare_batch` recorded, so the row's variables
    are read where they live (the batch file) instead of travelling through XCom. The row is
    checked exactly as in `parse_batch` (minus the checks that compare rows: duplicates, folder
    conflicts, look-alike keys); the caller then compares its digest with the one prepare
    computed, which catches a file edited in between. At most one bounded line is read.
    """
    source.seek(offset)
    limits = BatchLimits(max_line_bytes=max_line_bytes)
    checker = _Checker(format, reserved_prefixes, strict, limits)
    for lineno, row_offset, content in physical_lines(
        source, limits, start_line=line, start_offset=offset
    ):
        checker.take(lineno, row_offset, content)
        break
    if checker.result.rows:
        return checker.result.rows[0]
    if checker.result.rejected:
        return checker.result.rejected[0]
    return RejectedRow(line, None, [error_issue(line, None, f"Line {line} is blank now")])


# --------------------------------------------------------------------------------------------
# Internals


class _Checker:
    """Per-batch state: the kept rows, the key registry, the limits and when to stop."""

    def __init__(
        self,
        format: Format,
        reserved_prefixes: tuple[str, ...],
        strict: bool,
        limits: BatchLimits,
    ) -> None:
        format_extension(format)  # unknown formats are a programming error: fail now
        self.format = format
        self.reserved = reserved_prefix_bases(reserved_prefixes)
        self.unknown_severity: Severity = "error" if strict else "warning"
        self.limits = limits
        self.result = BatchParseResult()
        self.keys = OutputKeyRegistry()
        self.name_lines: dict[str, int] = {}
        self.entries = 0
        self.stopped = False

    def take(self, lineno: int, offset: int | None, content: LineContent) -> None:
        """Check one physical line, whatever reading made of it."""
        if isinstance(content, str):
            self.check_line(lineno, content, offset)
        elif isinstance(content, LongLine):
            self.reject(lineno, None, [_long_line_issue(lineno, content, self.limits)])
        elif isinstance(content, Undecodable):
            self.reject(lineno, None, [invalid_json(lineno, content.detail)])
            self.stopped = self.stopped or content.stop
        else:
            self._stop(_over_limit_issue(lineno, f"{content.limit:,} bytes", "max_total_bytes"))

    def reject(self, lineno: int, output_key: str | None, issues: list[Issue]) -> None:
        self.entries += 1
        errors = [i for i in issues if i.severity == "error"]
        self.result.rejected.append(RejectedRow(lineno, output_key, errors))
        self.result.issues.extend(issues)
        if len(self.result.rejected) >= self.limits.max_rejected_rows:
            self._stop(_too_many_rejected_issue(lineno, len(self.result.rejected)))

    def _stop(self, issue: Issue) -> None:
        if not self.stopped:
            self.stopped = True
            self.result.issues.append(issue)

    def finish(self) -> BatchParseResult:
        _reject_late(self.result, self.keys.folder_conflicts())
        if self.entries == 0 and not self.stopped:
            self.result.issues.append(Issue(None, None, "error", "Empty batch: no rows found"))
        return self.result

    def check_line(self, lineno: int, raw: str, offset: int | None = None) -> None:
        """Check one decoded line; rows and rejected lines go to `self.result`."""
        text = raw.strip(JS_TRIM_CHARS)
        if not text:
            return  # blank lines are skipped but still counted
        if self.entries >= self.limits.max_rows:
            self._stop(_over_limit_issue(lineno, f"{self.limits.max_rows:,} rows", "max_rows"))
            return
        obj = decode_row_object(lineno, raw, text)
        if isinstance(obj, Issue):
            self.reject(lineno, None, [obj])
            return

        issues: list[Issue] = []
        # Only lines that could hold a lone surrogate pay for looking at every string.
        strings = may_hold_lone_surrogate(text)
        output_key, claimed_key = read_output_key(obj, lineno, strings, issues)
        key_issues: list[Issue] = []
        if claimed_key is not None:
            key_issues = output_key_issues(lineno, claimed_key, self.reserved, self.format)
            issues += key_issues
        variables = read_variables(obj, lineno, strings, issues)
        execution_name = read_execution_name(obj, lineno, strings, issues)
        if has_unknown_fields(obj):
            issues += unknown_field_issues(obj, lineno, self.unknown_severity)
        # Rows are compared last, so a line's own problems come first in its messages.
        if claimed_key is not None:
            issues += self.keys.claim(lineno, claimed_key, writable=not key_issues)
        if execution_name:
            issues += self._claim_execution_name(lineno, execution_name)

        if claimed_key is None or (issues and any(i.severity == "error" for i in issues)):
            self.reject(lineno, output_key, issues)
            return
        self.entries += 1
        if issues:
            self.result.issues += issues  # warnings only
        # Validating (not model_construct) is faster here; the shallow copy of `variables` it
        # makes replaces the parsed dict, which is then freed.
        self.result.rows.append(
            BatchRow.model_validate(
                {
                    "line": lineno,
                    "offset": offset,
                    "outputKey": claimed_key,
                    "variables": variables,
                    "executionName": execution_name,
                }
            )
        )

    def _claim_execution_name(self, lineno: int, name: str) -> list[Issue]:
        first = self.name_lines.setdefault(name, lineno)
        if first == lineno:
            return []
        return [
            error_issue(
                lineno,
                "executionName",
                f"Duplicate executionName {quote_key(name)} on line {lineno} (first used on line "
                f"{first}): Step Functions execution names must be unique per state machine.",
            )
        ]


def _reject_late(result: BatchParseResult, issues: list[Issue]) -> None:
    """Add errors found once the whole batch is known; a row they concern is rejected."""
    if not issues:
        return
    by_line: dict[int, list[Issue]] = {}
    for issue in issues:
        assert issue.line is not None
        by_line.setdefault(issue.line, []).append(issue)
    for rejected in result.rejected:
        rejected.errors.extend(by_line.get(rejected.line, ()))
    kept = []
    for row in result.rows:
        if row.line in by_line:
            result.rejected.append(RejectedRow(row.line, row.output_key, by_line[row.line]))
        else:
            kept.append(row)
    result.rows = kept
    result.rejected.sort(key=lambda r: r.line)
    result.issues.extend(issues)
    result.issues.sort(key=lambda i: i.line if i.line is not None else float("inf"))


# --- messages for the batch as a whole ----------------------------------------------------------


def _long_line_issue(lineno: int, line: LongLine, limits: BatchLimits) -> Issue:
    size = f"{line.size:,} bytes" if line.complete else f"at least {line.size:,} bytes"
    return error_issue(
        lineno,
        None,
        f"Line {lineno} is {size}, over the {limits.max_line_bytes:,}-byte limit "
        "(max_line_bytes): a Step Functions input holds at most 262,144 bytes, so this row "
        "could never render; pass media as URLs, not inline",
    )


def _over_limit_issue(lineno: int, amount: str, option: str) -> Issue:
    return _stopped(
        lineno, f": the batch holds more than {amount} ({option}); split it into several batches"
    )


def _too_many_rejected_issue(lineno: int, rejected: int) -> Issue:
    return _stopped(
        lineno,
        f" after {rejected} rejected lines (max_rejected_rows): this does not look like a JSONL "
        "batch; fix the lines above first",
    )


def _stopped(lineno: int, why: str) -> Issue:
    """The batch-level error that ends reading early (the rows after `lineno` are unread)."""
    return Issue(None, None, "error", f"Stopped reading at line {lineno}{why}")
