"""Parse and validate a JSONL batch of render rows, streaming, reporting every problem at once.

Mirrors the Node CLI's `lambda render-batch` parsing (contract §7.1: same trimming, same physical
line numbers, same message headlines) and adds the checks the Node SDK skips (unsafe keys, format
extensions, duplicates, execution-name rules), so a bad batch fails before anything is deployed or
started. Unlike the Node CLI it does not stop at the first bad line: users fix a batch in one go.

Pure Python (no Airflow import) so the CLI, the operators and the tests share it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from hyperframes_airflow.contract.issues import BatchValidationError, Issue

__all__ = [
    "DEFAULT_RESERVED_PREFIXES",
    "EXECUTION_NAME_MAX_LENGTH",
    "FORMAT_EXTENSIONS",
    "MAX_S3_KEY_BYTES",
    "VIDEO_EXTENSIONS",
    "BatchParseResult",
    "BatchRow",
    "Format",
    "RejectedRow",
    "parse_batch",
    "parse_batch_file",
    "read_row_at",
]

Format = Literal["mp4", "mov", "webm", "png-sequence"]

#: Same table as the SDK's `formatExtension.ts`; png-sequence output is a gzip tar of the frames.
FORMAT_EXTENSIONS: Final[dict[str, str]] = {
    "mp4": ".mp4",
    "mov": ".mov",
    "webm": ".webm",
    "png-sequence": "",
}
VIDEO_EXTENSIONS: Final[tuple[str, ...]] = (".mp4", ".mov", ".webm")

#: The stack keeps deployed sites under `sites/`; a render must never overwrite one.
DEFAULT_RESERVED_PREFIXES: Final[tuple[str, ...]] = ("sites/",)
_PREFIX_REASONS: Final[dict[str, str]] = {
    "sites": "deployed sites live there",
    "renders": "the stack's scratch space, expired by its lifecycle rule",
}

#: S3 rejects longer keys, so catch them before a render runs for minutes and then fails.
MAX_S3_KEY_BYTES: Final = 1024
#: AWS allows 1-80 characters; we also require the CloudWatch-safe set (contract §3.2).
EXECUTION_NAME_MAX_LENGTH: Final = 80
_EXECUTION_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,80}")
_EXECUTION_NAME_BAD_CHAR_RE: Final = re.compile(r"[^A-Za-z0-9_-]")

# What JS `String.prototype.trim()` strips: WhiteSpace (incl. U+FEFF) and LineTerminator.
# Python's `str.strip()` differs (it keeps U+FEFF and strips U+001C-U+001F, U+0085).
_JS_TRIM_CHARS: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_CONTROL_RE: Final = re.compile("[\u0000-\u001f\u007f-\u009f]")
# A lone surrogate can only come from a `\uD8xx`-`\uDFxx` escape (or a raw one in str input);
# only lines matching this pay for the walk that looks for one.
_MAYBE_SURROGATE_RE: Final = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")
# Anything that could make an empty, "." or ".." segment; keys without it skip the split.
_SEGMENT_SUSPECT_RE: Final = re.compile(r"//|/\Z|(?:\A|/)\.\.?(?:/|\Z)")
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_S = TypeVar("_S", str, bytes)

_NOT_AN_OBJECT: Final = 'each line must be a JSON object with at least { "outputKey": "..." }.'


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
) -> BatchParseResult:
    """Validate a JSONL batch line by line, keeping only the valid rows in memory.

    `source` is any iterable of lines: a file object in binary mode (best: lines split on `\\n`
    only, exactly like the Node CLI) or text mode, or a list of strings. An item holding several
    `\\n`-separated lines counts as several physical lines. Bytes must be UTF-8.
    """
    checker = _Checker(format, reserved_prefixes)
    for lineno, offset, text in _physical_lines(source):
        if isinstance(text, _Unreadable):
            checker.reject(lineno, None, [_invalid_json(lineno, text.detail)])
            if text.stop:
                break
        else:
            checker.check_line(lineno, text, offset)
    return checker.finish()


def parse_batch_file(
    path: str | os.PathLike[str],
    *,
    format: Format = "mp4",
    reserved_prefixes: tuple[str, ...] = DEFAULT_RESERVED_PREFIXES,
) -> BatchParseResult:
    """Parse a batch file from disk, streaming.

    Opened in binary mode so lines split on `\\n` only (CRLF's `\\r` is trimmed, a lone `\\r` is
    not a line break), as in Node; a UTF-8 BOM is trimmed like JS `trim()` does.
    """
    with open(path, "rb") as fh:
        return parse_batch(fh, format=format, reserved_prefixes=reserved_prefixes)


def read_row_at(
    source: BinaryIO,
    *,
    offset: int,
    line: int,
    format: Format = "mp4",
    reserved_prefixes: tuple[str, ...] = DEFAULT_RESERVED_PREFIXES,
) -> BatchRow | RejectedRow:
    """Read and check the one row that starts at byte `offset` of a seekable binary source.

    A render task calls this with the position `prepare_batch` recorded, so the row's variables
    are read where they live (the batch file) instead of travelling through XCom. The row is
    checked exactly as in `parse_batch` (minus batch-wide duplicate detection); the caller then
    compares its digest with the one prepare computed, which catches a file edited in between.
    """
    source.seek(offset)
    raw = source.readline()
    checker = _Checker(format, reserved_prefixes)
    if raw.startswith(_UTF16_BOMS) and offset == 0:
        return RejectedRow(line, None, [_invalid_json(line, "the file is UTF-16 encoded")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RejectedRow(
            line, None, [_invalid_json(line, f"not valid UTF-8 (byte {exc.start + 1})")]
        )
    checker.check_line(line, text.removesuffix("\n"), offset)
    if checker.result.rows:
        return checker.result.rows[0]
    if checker.result.rejected:
        return checker.result.rejected[0]
    return RejectedRow(line, None, [_error(line, None, f"Line {line} is blank now")])


# --------------------------------------------------------------------------------------------
# Internals


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A physical line that could not be decoded; `stop` ends the parse (wrong file encoding)."""

    detail: str
    stop: bool = False


def _physical_lines(
    source: Iterable[str] | Iterable[bytes],
) -> Iterator[tuple[int, int | None, str | _Unreadable]]:
    """Yield (1-based physical line, byte offset, text) one line at a time, never the whole
    file. Offsets are known for binary sources only (None for text)."""
    lineno = 0
    position = 0
    item: str | bytes
    for item in source:
        if isinstance(item, bytes):
            if lineno == 0 and item.startswith(_UTF16_BOMS):
                yield 1, 0, _Unreadable("the file is UTF-16 encoded; save it as UTF-8", stop=True)
                return
            if item.find(b"\n", 0, len(item) - 1) < 0:  # the usual case: one line
                lineno += 1
                start, position = position, position + len(item)
                try:
                    yield lineno, start, item.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield lineno, start, _Unreadable(f"not valid UTF-8 (byte {exc.start + 1})")
                continue
            for piece in _split_lines(item):
                lineno += 1
                start, position = position, position + len(piece) + 1
                try:
                    yield lineno, start, piece.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield lineno, start, _Unreadable(f"not valid UTF-8 (byte {exc.start + 1})")
        elif isinstance(item, str):
            if item.find("\n", 0, len(item) - 1) < 0:  # the usual case: one line
                lineno += 1
                yield lineno, None, item
                continue
            for text in _split_lines(item):
                lineno += 1
                yield lineno, None, text
        else:
            raise TypeError(f"batch lines must be str or bytes, not {type(item).__name__}")


def _split_lines(item: _S) -> list[_S]:
    """Split an item holding several lines; its own final terminator is not an extra line."""
    pieces = item.split(b"\n") if isinstance(item, bytes) else item.split("\n")
    if len(pieces) > 1 and not pieces[-1]:
        pieces.pop()
    return pieces


class _RejectedConstant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _RejectedConstant(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        # JS would turn it into Infinity and later serialise it as null; refuse instead.
        raise _RejectedConstant("a number is out of range (JSON numbers must be finite)")
    return value


_decoder: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)


def _json_type(value: Any) -> str:
    """Name a JSON value's type for a message, never its value (it may be personal data)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _has_surrogate(value: Any) -> bool:
    """Walk a parsed JSON value (iteratively: depth is user-controlled) for lone surrogates."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE_RE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _quote(key: str, limit: int = 120) -> str:
    """Quote a key for a message: JSON escapes make control characters visible."""
    if len(key) > limit:
        key = key[:limit] + "…"
    return json.dumps(key, ensure_ascii=False)


def _invalid_json(lineno: int, detail: str, field_name: str | None = None) -> Issue:
    return Issue(
        lineno, field_name, "error", f"Invalid JSON in batch file on line {lineno}: {detail}"
    )


def _surrogate_issue(lineno: int, field_name: str) -> Issue:
    detail = (
        f'lone UTF-16 surrogate in "{field_name}" (\\uD800-\\uDFFF escapes must come in pairs); '
        "it cannot be encoded as UTF-8"
    )
    return _invalid_json(lineno, detail, field_name)


def _error(lineno: int, field_name: str | None, message: str) -> Issue:
    return Issue(lineno, field_name, "error", message)


class _Checker:
    """Per-batch state: the kept rows, and key -> first line maps for duplicate detection."""

    def __init__(self, format: Format, reserved_prefixes: tuple[str, ...]) -> None:
        if format not in FORMAT_EXTENSIONS:
            raise ValueError(
                f"unknown format {format!r}; expected one of {list(FORMAT_EXTENSIONS)}"
            )
        if isinstance(reserved_prefixes, str):
            raise TypeError("reserved_prefixes must be a tuple of prefixes, not a string")
        self.format = format
        self.prefixes: list[str] = []
        for prefix in reserved_prefixes:
            base = prefix.strip("/")
            if not base:
                raise ValueError(f"reserved prefix {prefix!r} is empty")
            self.prefixes.append(base)
        self.result = BatchParseResult()
        self.key_lines: dict[str, int] = {}
        self.name_lines: dict[str, int] = {}
        self.entries = 0

    def reject(self, lineno: int, output_key: str | None, errors: list[Issue]) -> None:
        self.entries += 1
        self.result.rejected.append(RejectedRow(lineno, output_key, errors))
        self.result.issues.extend(errors)

    def finish(self) -> BatchParseResult:
        if self.entries == 0:
            self.result.issues.append(Issue(None, None, "error", "Empty batch: no rows found"))
        return self.result

    def check_line(self, lineno: int, raw: str, offset: int | None = None) -> None:
        text = raw.strip(_JS_TRIM_CHARS)
        if not text:
            return  # blank lines are skipped but still counted
        try:
            # `text` is trimmed, so raw_decode (no whitespace skipping) is enough, and faster.
            obj, end = _decoder.raw_decode(text)
            if end != len(text):
                raise json.JSONDecodeError("Extra data", text, end)
        except json.JSONDecodeError as exc:
            column = exc.colno + raw.find(text[:1])  # physical column: count trimmed space
            detail = f"{exc.msg.removesuffix(' at')} at column {column}"
            self.reject(lineno, None, [_invalid_json(lineno, detail)])
            return
        except _RejectedConstant as exc:  # NaN, Infinity, -Infinity, 1e999
            self.reject(lineno, None, [_invalid_json(lineno, str(exc))])
            return
        except ValueError:  # Python refuses to convert integers of over 4300 digits
            self.reject(lineno, None, [_invalid_json(lineno, "a number has too many digits")])
            return
        except RecursionError:
            self.reject(lineno, None, [_invalid_json(lineno, "nested too deeply")])
            return
        if not isinstance(obj, dict):
            self.reject(
                lineno,
                None,
                [_error(lineno, None, f"Invalid batch entry on line {lineno}: {_NOT_AN_OBJECT}")],
            )
            return

        errors: list[Issue] = []
        # Only lines that could hold a lone surrogate pay for the walk that looks for one.
        maybe_surrogate = ("\\u" in text or not text.isascii()) and bool(
            _MAYBE_SURROGATE_RE.search(text)
        )

        # outputKey
        key = obj.get("outputKey", _MISSING)
        output_key: str | None = None  # reported in RejectedRow, for the manifest
        claimed_key: str | None = None  # takes part in duplicate detection
        if key is _MISSING:
            errors.append(_error(lineno, "outputKey", f"Missing outputKey on line {lineno}"))
        elif not isinstance(key, str):
            errors.append(
                _error(
                    lineno,
                    "outputKey",
                    f'Missing outputKey on line {lineno}: "outputKey" must be a non-empty string,'
                    f" got {_json_type(key)}",
                )
            )
        elif not key.strip(_JS_TRIM_CHARS):
            output_key = key
            detail = "got only whitespace" if key else "got an empty string"
            errors.append(
                _error(
                    lineno,
                    "outputKey",
                    f'Missing outputKey on line {lineno}: "outputKey" must be a non-empty string,'
                    f" {detail}",
                )
            )
        elif maybe_surrogate and _has_surrogate(key):
            errors.append(_surrogate_issue(lineno, "outputKey"))
        else:
            output_key = claimed_key = key
            errors.extend(self._key_errors(lineno, key))

        # variables
        raw_variables = obj.get("variables", _MISSING)
        variables: dict[str, Any] = {}
        if isinstance(raw_variables, dict):
            variables = raw_variables
            if maybe_surrogate and _has_surrogate(variables):
                errors.append(_surrogate_issue(lineno, "variables"))
        elif raw_variables is not _MISSING:
            errors.append(
                _error(
                    lineno,
                    "variables",
                    f'Invalid variables on line {lineno}: "variables" must be a JSON object '
                    f"(or omitted). Got {_json_type(raw_variables)}.",
                )
            )

        # executionName
        name = obj.get("executionName", _MISSING)
        execution_name: str | None = None
        if name is _MISSING:
            pass
        elif not isinstance(name, str):
            errors.append(
                _error(
                    lineno,
                    "executionName",
                    f"Invalid executionName on line {lineno}: must be a string,"
                    f" got {_json_type(name)}",
                )
            )
        elif maybe_surrogate and _has_surrogate(name):
            errors.append(_surrogate_issue(lineno, "executionName"))
        else:
            execution_name = name
            problem = _execution_name_problem(name)
            if problem:
                errors.append(
                    _error(
                        lineno,
                        "executionName",
                        f"Invalid executionName on line {lineno}: {problem}",
                    )
                )

        # Duplicates: the first line to use a key or name keeps it, even if that line is rejected
        # for another reason, so fixing one line never turns another into a duplicate.
        if claimed_key is not None:
            first = self.key_lines.setdefault(claimed_key, lineno)
            if first != lineno:
                errors.append(
                    _error(
                        lineno,
                        "outputKey",
                        f"Duplicate outputKey {_quote(claimed_key)} on line {lineno} (first used "
                        f"on line {first}): two renders would write one object.",
                    )
                )
        if execution_name:
            first = self.name_lines.setdefault(execution_name, lineno)
            if first != lineno:
                errors.append(
                    _error(
                        lineno,
                        "executionName",
                        f"Duplicate executionName {_quote(execution_name)} on line {lineno} "
                        f"(first used on line {first}): Step Functions execution names must be "
                        "unique per state machine.",
                    )
                )

        if errors or claimed_key is None:
            self.reject(lineno, output_key, errors)
            return
        self.entries += 1
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

    def _key_errors(self, lineno: int, key: str) -> list[Issue]:
        """Every reason `key` is unsafe or wrong for the format, one issue each."""
        problems: list[str] = []
        if key.startswith("/"):
            problems.append('must not start with "/" (keys are relative to the bucket or root)')
        if "\\" in key:
            problems.append('must not contain "\\" (separate folders with "/")')
        controls = (
            []
            if key.isprintable()
            else sorted({f"U+{ord(c):04X}" for c in _CONTROL_RE.findall(key)})
        )
        if controls:
            problems.append(f"must not contain control characters (found {', '.join(controls)})")
        if _SEGMENT_SUSPECT_RE.search(key):  # most keys skip the split
            segments = key.split("/")
            inner = segments[1:] if key.startswith("/") else segments
            if ".." in inner:
                problems.append(
                    'must not contain ".." segments (they could escape the output root)'
                )
            if "." in inner:
                problems.append('must not contain "." segments (two spellings of one object)')
            if "" in inner[:-1]:
                problems.append('must not contain empty segments ("//")')
            if len(inner) > 1 and inner[-1] == "":
                problems.append('must not end with "/" (that names a folder, not a file)')
        for base in self.prefixes:
            if key.startswith(base) and (len(key) == len(base) or key[len(base)] == "/"):
                reason = _PREFIX_REASONS.get(base, "reserved by configuration")
                problems.append(f'must not be under the reserved prefix "{base}/" ({reason})')
        # A character is at most 4 UTF-8 bytes: encode only keys that could be too long.
        size = len(key.encode("utf-8")) if len(key) > MAX_S3_KEY_BYTES // 4 else 0
        if size > MAX_S3_KEY_BYTES:
            problems.append(f"is {size} UTF-8 bytes; S3 keys are limited to {MAX_S3_KEY_BYTES}")
        quoted = _quote(key) if problems else ""
        issues = [
            _error(lineno, "outputKey", f"Unsafe outputKey {quoted} on line {lineno}: {p}")
            for p in problems
        ]

        ext = FORMAT_EXTENSIONS[self.format]
        if ext and not (key.endswith(ext) or key[-len(ext) :].lower() == ext):
            quoted = quoted or _quote(key)
            issues.append(
                _error(
                    lineno,
                    "outputKey",
                    f'outputKey {quoted} on line {lineno} must end with "{ext}" for format '
                    f"{self.format}",
                )
            )
        elif not ext and key[-5:].lower().endswith(VIDEO_EXTENSIONS):
            quoted = quoted or _quote(key)
            issues.append(
                _error(
                    lineno,
                    "outputKey",
                    f"outputKey {quoted} on line {lineno} must not end with a video extension "
                    f"({', '.join(VIDEO_EXTENSIONS)}) for format png-sequence: the output is a "
                    'gzip tar of PNG frames (".tar.gz" is a good ending)',
                )
            )
        return issues


class _Missing:
    """Sentinel for an absent JSON key (distinct from an explicit null)."""


_MISSING: Final = _Missing()


def _execution_name_problem(name: str) -> str | None:
    if _EXECUTION_NAME_RE.fullmatch(name):
        return None
    rule = (
        f'must be 1-{EXECUTION_NAME_MAX_LENGTH} characters of A-Z, a-z, 0-9, "_" and "-" '
        "(AWS Step Functions limits names to 80 characters, and only this set works with "
        "CloudWatch logs and metrics)"
    )
    if not name:
        return f"{rule}; got an empty string"
    parts = []
    if len(name) > EXECUTION_NAME_MAX_LENGTH:
        parts.append(f"{len(name)} characters")
    bad = sorted(set(_EXECUTION_NAME_BAD_CHAR_RE.findall(name)))
    if bad:
        shown = ", ".join(json.dumps(c, ensure_ascii=False) for c in bad[:10])
        parts.append(f"disallowed character(s) {shown}")
    return f"{rule}; got {' and '.join(parts)}"
