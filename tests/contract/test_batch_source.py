"""Reading a batch is bounded: long lines, huge or endless sources, and paths that are no file."""

from __future__ import annotations

import gc
import json
import os
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hyperframes_airflow.contract.batch import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_REJECTED_ROWS,
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_TOTAL_BYTES,
    BatchParseResult,
    BatchRow,
    BatchSourceError,
    local_batch_problem,
    parse_batch,
    parse_batch_file,
    read_row_at,
)
from hyperframes_airflow.contract.batch_source import BatchLimits

MB = 1024 * 1024


def row(key: str, **extra: Any) -> str:
    return json.dumps({"outputKey": key, **extra})


def messages(result: BatchParseResult, line: int | None = None) -> list[str]:
    return [i.message for i in result.issues if i.line == line]


def traced_peak(run: Callable[[], Any]) -> tuple[Any, int]:
    """Run `run` under tracemalloc; return its result and the peak of traced memory."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        value = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if gc_was_enabled:
            gc.enable()
    return value, peak


def test_documented_defaults() -> None:
    assert DEFAULT_MAX_LINE_BYTES == MB
    assert DEFAULT_MAX_ROWS == 1_000_000
    assert DEFAULT_MAX_TOTAL_BYTES == 2 * 1024 * MB
    assert DEFAULT_MAX_REJECTED_ROWS == 1000
    assert BatchLimits() == BatchLimits(MB, 1_000_000, 2 * 1024 * MB, 1000)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_line_bytes must be a positive integer"):
            BatchLimits(max_line_bytes=bad)  # type: ignore[arg-type]


# --- long lines ------------------------------------------------------------------------------


def test_a_300_mb_line_is_rejected_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    huge = 300 * MB
    with path.open("wb") as fh:
        fh.write(row("a.mp4").encode() + b"\n")
        fh.write(b'{"outputKey": "b.mp4", "variables": {"blob": "')
        block = b"x" * MB
        for _ in range(huge // MB):
            fh.write(block)
        fh.write(b'"}}\n' + row("c.mp4").encode() + b"\n")
    line_size = path.stat().st_size - 2 * (len(row("a.mp4")) + 1) - 1  # without its "\n"

    result, peak = traced_peak(lambda: parse_batch_file(path))
    assert [r.line for r in result.rows] == [1, 3]
    assert messages(result, 2) == [
        f"Line 2 is {line_size:,} bytes, over the 1,048,576-byte limit (max_line_bytes): a Step "
        "Functions input holds at most 262,144 bytes, so this row could never render; pass media "
        "as URLs, not inline"
    ]
    assert result.rejected[0].line == 2 and result.rejected[0].output_key is None
    assert peak < 4 * MB  # at most one line's worth of the limit, never the 300 MB
    # The row after it still knows its true offset.
    last = result.rows[-1]
    assert last.offset == len(row("a.mp4")) + 1 + line_size + 1
    with path.open("rb") as fh:
        assert read_row_at(fh, offset=last.offset, line=3) == last


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_limit_is_exact_and_offsets_survive_skipped_lines(
    tmp_path: Path, newline: str
) -> None:
    def sized(key: str, size: int) -> str:
        base = row(key, variables={"p": ""})
        return row(key, variables={"p": "p" * (size - len(base))})

    limit = 200
    cr = len(newline) - 1  # a CRLF line's "\r" counts towards its size
    lines = [sized("a.mp4", limit - cr), sized("b.mp4", limit - cr + 1), "", sized("c.mp4", 90)]
    # Enough rows to cross the reader's 64 KiB pieces several times, some of them too long.
    lines += [sized(f"r/{i}.mp4", 150 + (i % 7) * 10) for i in range(2000)]
    path = tmp_path / "b.jsonl"
    path.write_bytes((newline.join(lines) + newline).encode())

    result = parse_batch_file(path, max_line_bytes=limit)
    assert [i.line for i in result.issues if i.line is not None][:1] == [2]
    assert all(i.message.startswith(f"Line {i.line} is ") for i in result.issues)
    too_long = {r.line for r in result.rejected}
    assert too_long == {2} | {5 + i for i in range(2000) if 150 + (i % 7) * 10 + cr > limit}
    assert len(result.rows) == len(lines) - 1 - len(too_long)
    with path.open("rb") as fh:
        for kept in result.rows:
            assert kept.offset is not None
            assert read_row_at(fh, offset=kept.offset, line=kept.line, max_line_bytes=limit) == kept


def test_text_sources_measure_utf8_bytes() -> None:
    wide = json.dumps({"outputKey": "a.mp4", "variables": {"t": "é" * 50}}, ensure_ascii=False)
    assert len(wide) <= 100 < len(wide.encode())
    result = parse_batch([wide, row("b.mp4")], max_line_bytes=100)
    assert [r.line for r in result.rows] == [2]
    assert messages(result, 1)[0].startswith(f"Line 1 is {len(wide.encode())} bytes, over")


# --- endless or huge sources -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_dev_zero_ends_with_one_clear_error_in_bounded_memory() -> None:
    def parse() -> BatchParseResult:
        with open("/dev/zero", "rb") as fh:
            return parse_batch(fh, max_total_bytes=8 * MB)

    result, peak = traced_peak(parse)
    assert [(i.line, i.message) for i in result.issues] == [
        (
            1,
            "Line 1 is at least 8,388,608 bytes, over the 1,048,576-byte limit (max_line_bytes):"
            " a Step Functions input holds at most 262,144 bytes, so this row could never render;"
            " pass media as URLs, not inline",
        ),
        (
            None,
            "Stopped reading at line 1: the batch holds more than 8,388,608 bytes"
            " (max_total_bytes); split it into several batches",
        ),
    ]
    assert result.rows == [] and not result.ok
    assert peak < 4 * MB


@pytest.mark.timeout(120)
def test_dev_zero_with_the_default_limits_stops_at_2_gib() -> None:
    started = time.monotonic()
    with open("/dev/zero", "rb") as fh:
        result = parse_batch(fh)
    assert result.issues[-1].message == (
        "Stopped reading at line 1: the batch holds more than 2,147,483,648 bytes"
        " (max_total_bytes); split it into several batches"
    )
    print(f"\n/dev/zero to the 2 GiB cap: {time.monotonic() - started:.1f} s")


@pytest.mark.timeout(60)
def test_dev_urandom_stops_after_max_rejected_rows() -> None:
    def parse() -> BatchParseResult:
        with open("/dev/urandom", "rb") as fh:
            return parse_batch(fh, max_total_bytes=64 * MB)

    result, peak = traced_peak(parse)
    assert result.rows == [] and len(result.rejected) == 1000
    *per_line, stop = result.issues
    assert len(per_line) == 1000 and all(i.line is not None for i in per_line)
    last_line = result.rejected[-1].line
    assert (stop.line, stop.severity) == (None, "error")
    assert stop.message == (
        f"Stopped reading at line {last_line} after 1000 rejected lines (max_rejected_rows): this"
        " does not look like a JSONL batch; fix the lines above first"
    )
    assert peak < 8 * MB


def test_max_rejected_rows_and_max_rows() -> None:
    bad = parse_batch(["{}", "", "[]", row("ok.mp4"), "x", "y"], max_rejected_rows=3)
    assert [r.line for r in bad.rejected] == [1, 3, 5]
    assert bad.issues[-1].message.startswith("Stopped reading at line 5 after 3 rejected lines")

    lines = [row(f"{i}.mp4") for i in range(5)]
    many = parse_batch([lines[0], "", *lines[1:]], max_rows=3)
    assert [r.line for r in many.rows] == [1, 3, 4]
    assert [(i.line, i.message) for i in many.issues] == [
        (
            None,
            "Stopped reading at line 5: the batch holds more than 3 rows (max_rows); split it into"
            " several batches",
        )
    ]
    assert parse_batch(lines, max_rows=5).ok


def test_total_limit_counts_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"".join(f"{row(f'{i}.mp4')}\n".encode() for i in range(10)))
    size = path.stat().st_size
    assert parse_batch_file(path, max_total_bytes=size).ok
    cut = parse_batch_file(path, max_total_bytes=size - 1)
    assert len(cut.rows) == 9
    assert cut.issues[-1].message.startswith("Stopped reading at line 10: the batch holds more")


def test_a_generator_of_lines_is_still_read_lazily_and_bounded() -> None:
    def lines() -> Iterator[bytes]:
        yield (row("a.mp4") + "\n").encode()
        yield b"{" + b" " * 500 + b"}\n"
        while True:  # endless: only the total limit stops it
            yield (row("b.mp4") + "\n").encode()

    result = parse_batch(lines(), max_line_bytes=100, max_total_bytes=10_000)
    assert messages(result, 2)[0].startswith("Line 2 is 502 bytes, over the 100-byte limit")
    assert result.issues[-1].message.startswith("Stopped reading at line ")


# --- paths that are not a batch file -------------------------------------------------------------


def test_local_batch_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "ok.jsonl"
    good.write_text(row("a.mp4") + "\n")
    assert local_batch_problem(good) is None
    assert local_batch_problem(str(good)) is None

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    link_loop = tmp_path / "loop.jsonl"
    link_loop.symlink_to(link_loop)
    try:
        assert local_batch_problem(tmp_path / "nope") == f"batch file not found: {tmp_path}/nope"
        assert local_batch_problem(tmp_path) == (
            f"batch path is a directory, not a JSONL file: {tmp_path}"
        )
        assert local_batch_problem(fifo) == (
            f"batch path is a FIFO (named pipe), not a JSONL file: {fifo}"
        )
        assert local_batch_problem(sock_path) == (
            f"batch path is a socket, not a JSONL file: {sock_path}"
        )
        assert local_batch_problem("/dev/zero") == (
            "batch path is a device, not a JSONL file: /dev/zero"
        )
        assert local_batch_problem(link_loop) == (
            f"batch file cannot be read (Too many levels of symbolic links): {link_loop}"
        )
        assert local_batch_problem(good / "x") == (
            f"batch file cannot be read (Not a directory): {good}/x"
        )
        # Root reads any file, so unreadability is simulated (os.access is what is consulted).
        monkeypatch.setattr(os, "access", lambda path, mode: False)
        assert local_batch_problem(good) == (
            f"batch file is not readable (permission denied): {good}"
        )
    finally:
        sock.close()


@pytest.mark.timeout(10)
def test_parse_batch_file_refuses_a_fifo_and_a_directory_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(BatchSourceError, match="is a FIFO"):
        parse_batch_file(fifo)  # opening it would block until a writer came
    with pytest.raises(BatchSourceError, match="is a directory"):
        parse_batch_file(tmp_path)
    with pytest.raises(ValueError, match="batch file not found"):
        parse_batch_file(tmp_path / "missing.jsonl")


def test_read_row_at_reads_one_bounded_line(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(row("a.mp4").encode() + b"\n" + b"9" * 5000 + b"\n")
    with path.open("rb") as fh:
        first = read_row_at(fh, offset=0, line=1)
        assert isinstance(first, BatchRow) and first.output_key == "a.mp4"
        long = read_row_at(fh, offset=len(row("a.mp4")) + 1, line=2, max_line_bytes=1000)
        assert not isinstance(long, BatchRow)
        assert long.errors[0].message.startswith("Line 2 is 5,000 bytes, over the 1,000-byte")
