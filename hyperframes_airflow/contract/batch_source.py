"""Where batch lines come from: bounded reads, physical line numbers and byte offsets.

A batch is user input of any size, or not a batch at all (`/dev/zero`, a video, a directory), so
every read is bounded: a file object is read in pieces of at most 64 KiB, a line longer than
`max_line_bytes` is counted and skipped without being held, and reading stops after
`max_total_bytes`. Lines are split on `\\n` only, like the Node CLI's `/\\r?\\n/` (the `\\r` of
CRLF is trimmed later, with the rest of the line's JS whitespace).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from hyperframes_airflow.contract._files import file_kind

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_REJECTED_ROWS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_MAX_TOTAL_BYTES",
    "BatchLimits",
    "BatchSourceError",
    "LongLine",
    "SourceTooLarge",
    "Undecodable",
    "local_batch_problem",
    "physical_lines",
]

#: A line can never render past the 262,144-byte Step Functions input limit; 1 MiB leaves room
#: for JSON escapes that shrink when re-encoded, and still refuses a line that is surely wrong.
DEFAULT_MAX_LINE_BYTES: Final = 1024 * 1024
#: One DAG run per batch: a million renders is already far beyond one run's sensible size.
DEFAULT_MAX_ROWS: Final = 1_000_000
#: A million rows of 2 KiB; anything bigger is not a batch this tool should read in one go.
DEFAULT_MAX_TOTAL_BYTES: Final = 2 * 1024**3
#: After this many rejected lines the input is most likely not a JSONL batch at all.
DEFAULT_MAX_REJECTED_ROWS: Final = 1000

_READ_SIZE: Final = 64 * 1024
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How much of a batch is read before giving up, each with a documented default.

    Sizes are UTF-8 bytes for binary sources and characters for text sources.
    """

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_rejected_rows: int = DEFAULT_MAX_REJECTED_ROWS

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")


class BatchSourceError(ValueError):
    """The batch cannot be read at all (missing, a directory, a FIFO...): one line says why."""


@dataclass(frozen=True, slots=True)
class LongLine:
    """A line over `max_line_bytes`, never held in memory: only its size is known (a lower
    bound when reading stopped inside it)."""

    size: int
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A line that is not UTF-8 text; `stop` ends the parse (the whole file is UTF-16)."""

    detail: str
    stop: bool = False


@dataclass(frozen=True, slots=True)
class SourceTooLarge:
    """Reading stopped because the source holds more than `max_total_bytes`."""

    limit: int


LineContent = str | LongLine | Undecodable | SourceTooLarge


def local_batch_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a local path cannot be read as a batch, in one line, or None when it can.

    Only `stat` is used: opening a FIFO would block until a writer appears, and reading a
    directory or a device gives a traceback or never ends.
    """
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        return f"batch file not found: {name}"
    except OSError as exc:
        return f"batch file cannot be read ({exc.strerror or type(exc).__name__}): {name}"
    if not stat.S_ISREG(mode):
        return f"batch path is {file_kind(mode)}, not a JSONL file: {name}"
    if not os.access(name, os.R_OK):
        return f"batch file is not readable (permission denied): {name}"
    return None


def physical_lines(
    source: Iterable[str] | Iterable[bytes] | Any,
    limits: BatchLimits,
    *,
    start_line: int = 1,
    start_offset: int = 0,
) -> Iterator[tuple[int, int | None, LineContent]]:
    """Yield `(physical line, byte offset, content)` for each line, one at a time.

    A file object (anything with `read`) is read in bounded pieces and split on `\\n`; any other
    iterable yields lines (an item holding several `\\n`-separated lines counts as several, and
    an item's own final terminator is not an extra line). Offsets are known for bytes only
    (None for text). After `SourceTooLarge` nothing more is yielded.
    """
    read = getattr(source, "read", None)
    if callable(read):
        pieces: Iterable[Any] = _read_pieces(read)
        items_are_lines = False
    else:
        pieces = source
        items_are_lines = True
    return _Splitter(limits, start_line, start_offset).lines(pieces, items_are_lines)


def _read_pieces(read: Any) -> Iterator[Any]:
    while piece := read(_READ_SIZE):
        yield piece


class _Splitter:
    """Cut pieces into lines while keeping at most `max_line_bytes` of an unfinished line."""

    def __init__(self, limits: BatchLimits, start_line: int, start_offset: int) -> None:
        self.max_line = limits.max_line_bytes
        self.max_total = limits.max_total_bytes
        self.lineno = start_line - 1
        self.offset = start_offset  # byte offset of the next line's start (binary sources)
        self.total = 0
        self.carry: list[Any] = []  # parts of an unfinished line, while it is short enough
        self.carried = 0  # length of the unfinished line so far (also while it is skipped)
        self.skipping = False  # the unfinished line is over the limit: counted, not kept

    def lines(
        self, pieces: Iterable[Any], items_are_lines: bool
    ) -> Iterator[tuple[int, int | None, LineContent]]:
        empty: Any = b""
        for piece in pieces:
            if isinstance(piece, bytes):
                empty = b""
            elif isinstance(piece, str):
                empty = ""
            else:
                raise TypeError(f"batch lines must be str or bytes, not {type(piece).__name__}")
            room = self.max_total - self.total
            self.total += len(piece)
            if self.total > self.max_total:
                yield from self._split(piece[:room], items_are_lines=False)
                if self.skipping:
                    yield self.lineno + 1, None, LongLine(self.carried, complete=False)
                yield self.lineno + 1, None, SourceTooLarge(self.max_total)
                return
            yield from self._split(piece, items_are_lines)
        if self.carry or self.skipping:  # a last line without a terminator
            yield self._finish_line(empty)

    def _split(
        self, piece: Any, items_are_lines: bool
    ) -> Iterator[tuple[int, int | None, LineContent]]:
        binary = isinstance(piece, bytes)
        newline = b"\n" if binary else "\n"
        parts = piece.split(newline)
        tail = parts.pop()  # what follows the last newline: the start of the next line
        if parts and (self.carry or self.skipping):
            yield self._finish_line(parts[0])
            del parts[0]
        quarter = self.max_line // 4  # a character is at most 4 UTF-8 bytes: shorter lines fit
        for part in parts:  # the hot loop: one complete line each
            self.lineno += 1
            start = self.offset
            if binary:
                self.offset += len(part) + 1
            if len(part) > quarter and (size := _utf8_size(part)) > self.max_line:
                yield self.lineno, start if binary else None, LongLine(size)
            else:
                yield self.lineno, start if binary else None, _decode(part, self.lineno, start)
        if items_are_lines and not piece.endswith(newline):
            yield self._finish_line(tail)  # an item is a whole line, terminated or not
        elif tail:
            self._keep(tail)

    def _keep(self, part: Any) -> None:
        """Hold the start of an unfinished line, or only count it once it is too long."""
        self.carried += len(part)
        if self.skipping:
            return
        self.carry.append(part)
        if self.carried > self.max_line:
            self.carry.clear()
            self.skipping = True

    def _finish_line(self, last_part: Any) -> tuple[int, int | None, LineContent]:
        """Complete the unfinished line with `last_part` and start the next one."""
        self._keep(last_part)
        line = last_part[:0].join(self.carry)
        size, skipping = self.carried, self.skipping
        self.carry.clear()
        self.carried = 0
        self.skipping = False
        self.lineno += 1
        binary = isinstance(last_part, bytes)
        start = self.offset
        if binary:
            self.offset += size + 1
        if not skipping and size > self.max_line // 4:
            size = _utf8_size(line)
            skipping = size > self.max_line
        if skipping:
            return self.lineno, start if binary else None, LongLine(size)
        return self.lineno, start if binary else None, _decode(line, self.lineno, start)


def _utf8_size(part: str | bytes) -> int:
    if isinstance(part, bytes):
        return len(part)
    return len(part.encode("utf-8", "surrogatepass"))


def _decode(part: str | bytes, lineno: int, offset: int) -> str | Undecodable:
    if isinstance(part, str):
        return part
    if lineno == 1 and offset == 0 and part.startswith(_UTF16_BOMS):
        return Undecodable("the file is UTF-16 encoded; save it as UTF-8", stop=True)
    try:
        return part.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Undecodable(f"not valid UTF-8 (byte {exc.start + 1})")
