"""Batch parsing: every rule, every message kind, physical line numbers, streaming and memory."""

from __future__ import annotations

import gc
import io
import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from hyperframes_airflow.contract.batch import (
    FORMAT_EXTENSIONS,
    BatchParseResult,
    BatchRow,
    parse_batch,
    parse_batch_file,
)
from hyperframes_airflow.contract.issues import BatchValidationError, Issue


def write(tmp_path: Path, *lines: str, newline: str = "\n", name: str = "batch.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(newline.join(lines).encode("utf-8"))
    return path


def row(key: str, **extra: Any) -> str:
    return json.dumps({"outputKey": key, **extra})


def messages(result: BatchParseResult, line: int | None = None) -> list[str]:
    return [i.message for i in result.issues if line is None or i.line == line]


def only_message(result: BatchParseResult, line: int) -> str:
    found = messages(result, line)
    assert len(found) == 1, found
    return found[0]


# --- valid rows ------------------------------------------------------------------------------


def test_valid_rows_keep_fields_order_and_physical_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        row("out/a.mp4", variables={"name": "Ada", "n": 1}, executionName="row-a_1"),
        row("out/b.mp4"),
        '{"outputKey": "out/c.mp4", "unknown": [1, 2], "variables": {}}',
        "",
    )
    result = parse_batch_file(path)
    assert result.ok and result.rejected == [] and result.errors == []
    # An unknown field does not stop the row (it is only warned about: see the strict tests).
    assert [(i.line, i.field, i.severity) for i in result.issues] == [(3, "unknown", "warning")]
    assert [r.line for r in result.rows] == [1, 2, 3]
    first = result.rows[0]
    assert first == BatchRow(
        line=1,
        offset=0,
        outputKey="out/a.mp4",
        variables={"name": "Ada", "n": 1},
        executionName="row-a_1",
    )
    assert result.rows[1].variables == {} and result.rows[1].execution_name is None
    assert first.model_dump(by_alias=True) == {
        "line": 1,
        "offset": 0,
        "outputKey": "out/a.mp4",
        "variables": {"name": "Ada", "n": 1},
        "executionName": "row-a_1",
    }
    result.raise_for_errors()  # no error: nothing raised


def test_batch_row_is_frozen_and_accepts_field_names() -> None:
    by_name = BatchRow(line=4, output_key="k.mp4")  # type: ignore[call-arg]
    assert by_name.output_key == "k.mp4" and by_name.variables == {}
    with pytest.raises(pydantic.ValidationError):
        by_name.output_key = "other.mp4"


def test_bom_at_file_start_is_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + row("a.mp4").encode() + b"\n" + row("b.mp4").encode())
    result = parse_batch_file(path)
    assert result.ok and [r.output_key for r in result.rows] == ["a.mp4", "b.mp4"]
    # A text-mode file opened as plain utf-8 keeps U+FEFF in the first line: trimmed all the same.
    with path.open(encoding="utf-8") as fh:
        assert parse_batch(fh).ok


def test_crlf_and_lone_cr_follow_node_line_splitting(tmp_path: Path) -> None:
    path = write(tmp_path, row("a.mp4"), "", row("b.mp4"), "{", newline="\r\n")
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [1, 3]
    assert messages(result) == [
        "Invalid JSON in batch file on line 4: Expecting property name enclosed in double quotes"
        " at column 2"
    ]
    # Node splits on /\r?\n/ only: a lone \r is JSON whitespace inside one line, not a break.
    path = write(tmp_path, '{"outputKey": "a.mp4",\r"variables": {}}', row("b.mp4"))
    result = parse_batch_file(path)
    assert result.ok and [r.line for r in result.rows] == [1, 2]


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path, "", "   ", row("a.mp4"), "\t", "\u00a0\u2028\ufeff", row("b.mp4"), "nope", ""
    )
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [3, 6]
    assert [i.line for i in result.issues] == [7]


def test_trim_is_js_trim_not_python_strip(tmp_path: Path) -> None:
    # U+00A0 and U+3000 are JS whitespace; U+001C is Python whitespace but not JS whitespace.
    path = write(tmp_path, "\u00a0\u3000" + row("a.mp4") + "\u3000", "\u001c" + row("b.mp4"))
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [1]
    assert only_message(result, 2).startswith("Invalid JSON in batch file on line 2: ")


# --- whole-line problems -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("{", "Expecting property name enclosed in double quotes at column 2"),
        ('{"outputKey": "a.mp4"', "Expecting ',' delimiter at column 22"),
        ('  {"outputKey" "a.mp4"}', "Expecting ':' delimiter at column 16"),
        (row("a.mp4") + " {}", "Extra data at column 23"),
        ("{'outputKey': 'a.mp4'}", "Expecting property name enclosed in double quotes at column 2"),
        ('{"outputKey": "a\tb.mp4"}', "Invalid control character at column 17"),
        ("NaN", "NaN is not valid JSON"),
        ('{"outputKey": "a.mp4", "variables": {"x": Infinity}}', "Infinity is not valid JSON"),
        ('{"outputKey": "a.mp4", "variables": {"x": -Infinity}}', "-Infinity is not valid JSON"),
        (
            '{"outputKey": "a.mp4", "variables": {"x": 1e999}}',
            "a number is out of range (JSON numbers must be finite)",
        ),
        ('{"outputKey": "a.mp4", "v": ' + "9" * 5000 + "}", "a number has too many digits"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_invalid_json(tmp_path: Path, text: str, detail: str) -> None:
    result = parse_batch_file(write(tmp_path, row("ok.mp4"), text))
    assert messages(result) == [f"Invalid JSON in batch file on line 2: {detail}"]
    (rejected,) = result.rejected
    assert rejected.line == 2 and rejected.output_key is None
    assert rejected.errors == [Issue(2, None, "error", messages(result)[0])]
    assert [r.line for r in result.rows] == [1] and not result.ok


@pytest.mark.parametrize("text", ["[]", '["a.mp4"]', '"a.mp4"', "42", "null", "true"])
def test_non_object_line(tmp_path: Path, text: str) -> None:
    result = parse_batch_file(write(tmp_path, text))
    assert messages(result) == [
        "Invalid batch entry on line 1: each line must be a JSON object with at least"
        ' { "outputKey": "..." }.'
    ]
    assert result.issues[0].field is None


def test_invalid_utf8_line_is_reported_and_others_still_parse(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(row("a.mp4").encode() + b'\n{"outputKey": "caf\xe9.mp4"}\n' + b"{}")
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [1]
    assert messages(result, 2) == [
        "Invalid JSON in batch file on line 2: not valid UTF-8 (byte 19)"
    ]
    assert messages(result, 3) == ["Missing outputKey on line 3"]


def test_utf16_file_fails_once_not_per_line(tmp_path: Path) -> None:
    path = tmp_path / "utf16.jsonl"
    path.write_bytes((row("a.mp4") + "\n" + row("b.mp4")).encode("utf-16"))
    result = parse_batch_file(path)
    assert messages(result) == [
        "Invalid JSON in batch file on line 1: the file is UTF-16 encoded; save it as UTF-8"
    ]
    assert result.rows == []


# --- field problems ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "kept_key"),
    [
        ("{}", "Missing outputKey on line 1", None),
        ('{"variables": {}}', "Missing outputKey on line 1", None),
        (
            '{"outputKey": null}',
            'Missing outputKey on line 1: "outputKey" must be a non-empty string, got null',
            None,
        ),
        (
            '{"outputKey": 7}',
            'Missing outputKey on line 1: "outputKey" must be a non-empty string, got a number',
            None,
        ),
        (
            '{"outputKey": ["a.mp4"]}',
            'Missing outputKey on line 1: "outputKey" must be a non-empty string, got an array',
            None,
        ),
        (
            '{"outputKey": ""}',
            'Missing outputKey on line 1: "outputKey" must be a non-empty string, got an empty'
            " string",
            "",
        ),
        (
            '{"outputKey": "  "}',
            'Missing outputKey on line 1: "outputKey" must be a non-empty string, got only'
            " whitespace",
            "  ",
        ),
    ],
)
def test_missing_output_key(tmp_path: Path, text: str, message: str, kept_key: str | None) -> None:
    result = parse_batch_file(write(tmp_path, text))
    assert messages(result) == [message]
    assert result.issues[0].field == "outputKey"
    assert result.rejected[0].output_key == kept_key


@pytest.mark.parametrize(
    ("value", "kind"),
    [("null", "null"), ("[]", "an array"), ('"a=1"', "a string"), ("3", "a number")],
)
def test_invalid_variables(tmp_path: Path, value: str, kind: str) -> None:
    result = parse_batch_file(write(tmp_path, f'{{"outputKey": "a.mp4", "variables": {value}}}'))
    assert messages(result) == [
        f'Invalid variables on line 1: "variables" must be a JSON object (or omitted). Got {kind}.'
    ]
    assert result.issues[0].field == "variables"
    assert result.rejected[0].output_key == "a.mp4"


@pytest.mark.parametrize(
    ("value", "kind"), [("7", "a number"), ("null", "null"), ("{}", "an object")]
)
def test_execution_name_must_be_a_string(tmp_path: Path, value: str, kind: str) -> None:
    result = parse_batch_file(
        write(tmp_path, f'{{"outputKey": "a.mp4", "executionName": {value}}}')
    )
    assert messages(result) == [f"Invalid executionName on line 1: must be a string, got {kind}"]
    assert result.issues[0].field == "executionName"


NAME_RULE = (
    'Invalid executionName on line 1: must be 1-80 characters of A-Z, a-z, 0-9, "_" and "-" (AWS'
    " Step Functions limits names to 80 characters, and only this set works with CloudWatch logs"
    " and metrics); got "
)


@pytest.mark.parametrize(
    ("name", "got"),
    [
        ("", "an empty string"),
        ("x" * 81, "81 characters"),
        ("my render/1", 'disallowed character(s) " ", "/"'),
        ("é" * 81, '81 characters and disallowed character(s) "é"'),
    ],
)
def test_execution_name_rules(tmp_path: Path, name: str, got: str) -> None:
    result = parse_batch_file(write(tmp_path, row("a.mp4", executionName=name)))
    assert messages(result) == [NAME_RULE + got]


def test_execution_name_at_the_limit_is_fine(tmp_path: Path) -> None:
    name = "A-z_9" * 16
    assert len(name) == 80
    result = parse_batch_file(write(tmp_path, row("a.mp4", executionName=name)))
    assert result.ok and result.rows[0].execution_name == name


# --- unsafe keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("/abs/a.mp4", 'must not start with "/" (keys are relative to the bucket or root)'),
        ("../a.mp4", 'must not contain ".." segments (they could escape the output root)'),
        ("a/../../b.mp4", 'must not contain ".." segments (they could escape the output root)'),
        ("a/./b.mp4", 'must not contain "." segments (two spellings of one object)'),
        ("a//b.mp4", 'must not contain empty segments ("//")'),
        ("a\\b.mp4", 'must not contain "\\" (separate folders with "/")'),
        ("a\u0000b.mp4", "must not contain control characters (found U+0000)"),
        ("a\nb\u007f.mp4", "must not contain control characters (found U+000A, U+007F)"),
        ("a\u0085b.mp4", "must not contain control characters (found U+0085)"),
        (
            "sites/abc/index.mp4",
            'must not be under the reserved prefix "sites/" (deployed sites live there)',
        ),
        (
            "/".join(["x" * 200] * 5) + "x" * 20 + ".mp4",
            "is 1028 UTF-8 bytes; S3 keys are limited to 1024",
        ),
        ("/".join(["é" * 100] * 6) + ".mp4", "is 1209 UTF-8 bytes; S3 keys are limited to 1024"),
    ],
)
def test_unsafe_output_key(tmp_path: Path, key: str, problem: str) -> None:
    result = parse_batch_file(write(tmp_path, row("ok.mp4"), row(key)))
    quoted = json.dumps(key if len(key) <= 120 else key[:120] + "…", ensure_ascii=False)
    quoted = quoted.replace("\u007f", "\\u007f").replace("\u0085", "\\u0085")  # shown escaped
    assert messages(result) == [f"Unsafe outputKey {quoted} on line 2: {problem}"]
    assert result.issues[0].field == "outputKey"
    assert result.rejected[0].output_key == key and [r.line for r in result.rows] == [1]


def test_every_problem_of_one_key_is_reported(tmp_path: Path) -> None:
    result = parse_batch_file(write(tmp_path, row("/../a//b\u0001\\.mov/")))
    problems = [m.split(" on line 1")[1] for m in messages(result)]
    assert problems == [
        ': must not start with "/" (keys are relative to the bucket or root)',
        ': must not contain "\\" (separate folders with "/")',
        ": must not contain control characters (found U+0001)",
        ': must not contain ".." segments (they could escape the output root)',
        ': must not contain empty segments ("//")',
        ': must not end with "/" (that names a folder, not a file)',
        ' must end with ".mp4" for format mp4',
    ]


@pytest.mark.parametrize("key", ["sites", "sites/", "sites/x.mp4"])
def test_key_equal_to_or_under_reserved_prefix(tmp_path: Path, key: str) -> None:
    result = parse_batch_file(write(tmp_path, row(key)), format="png-sequence")
    assert any('reserved prefix "sites/"' in m for m in messages(result))


@pytest.mark.parametrize("key", ["sitesx/a.mp4", "my/sites/a.mp4", "Sites/a.mp4", "site.mp4"])
def test_keys_merely_resembling_reserved_prefix_are_fine(tmp_path: Path, key: str) -> None:
    assert parse_batch_file(write(tmp_path, row(key))).ok


def test_custom_reserved_prefixes(tmp_path: Path) -> None:
    path = write(tmp_path, row("renders/a.mp4"), row("private/b.mp4"), row("sites/c.mp4"))
    result = parse_batch_file(path, reserved_prefixes=("renders/", "/private"))
    assert messages(result) == [
        'Unsafe outputKey "renders/a.mp4" on line 1: must not be under the reserved prefix'
        ' "renders/" (the stack\'s scratch space, expired after 7 days by its lifecycle rule)',
        'Unsafe outputKey "private/b.mp4" on line 2: must not be under the reserved prefix'
        ' "private/" (reserved by configuration)',
    ]
    assert [r.output_key for r in result.rows] == ["sites/c.mp4"]
    assert parse_batch_file(path, reserved_prefixes=()).ok


def test_dotted_names_that_are_not_dot_segments_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, row("a/..b/.c/x.mp4"), row("a.b/c..mp4"), row("…/x.mp4"))
    assert parse_batch_file(path).ok


def test_long_keys_are_shortened_in_messages(tmp_path: Path) -> None:
    key = "/".join(["k" * 200] * 10) + ".mov"
    (message, ext_message) = messages(parse_batch_file(write(tmp_path, row(key))))
    assert f'"{"k" * 120}…"' in message and len(message) < 300
    assert ext_message.endswith('must end with ".mp4" for format mp4')


# --- extensions --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm"])
def test_video_formats_require_their_extension(tmp_path: Path, fmt: str) -> None:
    ext = FORMAT_EXTENSIONS[fmt]
    others = [e for e in (".mp4", ".mov", ".webm") if e != ext]
    keys = [f"a{ext}", f"b{ext.upper()}", f"c{others[0]}", f"d{others[1]}", "e", f"f{ext}.tmp"]
    result = parse_batch_file(write(tmp_path, *(row(k) for k in keys)), format=fmt)  # type: ignore[arg-type]
    assert [r.output_key for r in result.rows] == keys[:2]
    assert messages(result) == [
        f'outputKey "{k}" on line {n} must end with "{ext}" for format {fmt}'
        for n, k in enumerate(keys[2:], start=3)
    ]


def test_png_sequence_rejects_video_extensions(tmp_path: Path) -> None:
    keys = ["frames/a.tar.gz", "frames/b", "frames/c.png", "d.mp4", "e.MOV", "f.webm"]
    result = parse_batch_file(write(tmp_path, *(row(k) for k in keys)), format="png-sequence")
    assert [r.output_key for r in result.rows] == keys[:3]
    assert messages(result, 5) == [
        'outputKey "e.MOV" on line 5 must not end with a video extension (.mp4, .mov, .webm) for'
        ' format png-sequence: the output is a gzip tar of PNG frames (".tar.gz" is a good ending)'
    ]
    assert [i.line for i in result.issues] == [4, 5, 6]


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown format 'gif'"):
        parse_batch([], format="gif")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_batch([], reserved_prefixes="sites/")  # type: ignore[arg-type]


# --- duplicates --------------------------------------------------------------------------------


def test_duplicate_output_keys_keep_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, row("a.mp4"), row("b.mp4"), "", row("a.mp4"), row("a.mp4"))
    result = parse_batch_file(path)
    assert [(r.line, r.output_key) for r in result.rows] == [(1, "a.mp4"), (2, "b.mp4")]
    assert messages(result) == [
        'Duplicate outputKey "a.mp4" on line 4 (first used on line 1): two renders would write one'
        " object.",
        'Duplicate outputKey "a.mp4" on line 5 (first used on line 1): two renders would write one'
        " object.",
    ]
    assert [(r.line, r.output_key) for r in result.rejected] == [(4, "a.mp4"), (5, "a.mp4")]


def test_an_invalid_first_row_still_claims_its_key(tmp_path: Path) -> None:
    # Fixing line 1 must not turn line 2 into a duplicate later: both are reported now.
    path = write(tmp_path, row("a.mp4", variables=[]), row("a.mp4"))
    result = parse_batch_file(path)
    assert result.rows == []
    assert [i.field for i in result.issues] == ["variables", "outputKey"]
    assert "first used on line 1" in messages(result, 2)[0]


def test_keys_differing_in_case_are_distinct(tmp_path: Path) -> None:
    assert parse_batch_file(write(tmp_path, row("a.mp4"), row("A.mp4"))).ok


def test_duplicate_execution_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        row("a.mp4", executionName="n1"),
        row("b.mp4", executionName="n2"),
        row("c.mp4", executionName="n1"),
    )
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [1, 2]
    assert messages(result) == [
        'Duplicate executionName "n1" on line 3 (first used on line 1): Step Functions execution'
        " names must be unique per state machine."
    ]
    assert result.issues[0].field == "executionName"


# --- lone surrogates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"outputKey": "a\\ud800.mp4"}', "outputKey"),
        ('{"outputKey": "a.mp4", "variables": {"x": ["ok", "\\uDC00"]}}', "variables"),
        ('{"outputKey": "a.mp4", "variables": {"\\udbff": 1}}', "variables"),
        ('{"outputKey": "a.mp4", "executionName": "\\ud83d"}', "executionName"),
    ],
)
def test_lone_surrogates_are_rejected(tmp_path: Path, text: str, field: str) -> None:
    result = parse_batch_file(write(tmp_path, text))
    assert messages(result) == [
        f'Invalid JSON in batch file on line 1: lone UTF-16 surrogate in "{field}" (\\uD800-\\uDFFF'
        " escapes must come in pairs); it cannot be encoded as UTF-8"
    ]
    assert result.issues[0].field == field
    # Never hand the manifest a key it cannot write as UTF-8.
    assert result.rejected[0].output_key == (None if field == "outputKey" else "a.mp4")


def test_surrogate_pairs_and_escaped_backslashes_are_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"outputKey": "\\ud83d\\ude00.mp4", "variables": {"t": "\\\\ud800"}}',
    )
    result = parse_batch_file(path)
    assert result.ok
    assert result.rows[0].output_key == "\U0001f600.mp4"
    assert result.rows[0].variables == {"t": "\\ud800"}


def test_raw_lone_surrogate_in_str_input() -> None:
    result = parse_batch(['{"outputKey": "a.mp4", "variables": {"x": "\ud800"}}'])
    assert [i.field for i in result.issues] == ["variables"]


# --- several problems at once -------------------------------------------------------------------


def test_every_problem_on_every_line_is_reported_in_one_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        row("ok/1.mp4"),
        "{broken",
        "",
        '{"outputKey": "../x.mov", "variables": null, "executionName": 5}',
        "[1]",
        row("ok/2.mp4"),
        row("ok/1.mp4", executionName="bad name"),
    )
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [1, 6]
    assert [(i.line, i.field) for i in result.issues] == [
        (2, None),
        (4, "outputKey"),
        (4, "outputKey"),
        (4, "variables"),
        (4, "executionName"),
        (5, None),
        (7, "executionName"),
        (7, "outputKey"),
    ]
    assert [(r.line, r.output_key, len(r.errors)) for r in result.rejected] == [
        (2, None, 1),
        (4, "../x.mov", 4),
        (5, None, 1),
        (7, "ok/1.mp4", 2),
    ]
    assert all(i.severity == "error" for i in result.issues)
    assert result.errors == result.issues and not result.ok
    with pytest.raises(BatchValidationError) as caught:
        result.raise_for_errors()
    assert caught.value.issues == result.issues
    assert "8 error(s)" in str(caught.value)


def test_variable_values_never_appear_in_messages(tmp_path: Path) -> None:
    secret = "jane.doe@example.com"
    path = write(
        tmp_path,
        row("a.mov", variables={"email": secret}),
        row("a.mov", variables={"email": secret}, executionName=7),
        f'{{"outputKey": "b.mp4", "variables": {{"email": "{secret}", "n": NaN}}}}',
        f'{{"outputKey": "c.mp4", "variables": "{secret}"}}',
        f'{{"outputKey": "d.mp4", "variables": {{"email": "{secret}\\udc00"}}}}',
        f'{{"outputKey": "e.mp4", "variables": {{"email": "{secret}" ',
        f'{{"outputKey": "f.mp4", "variables": {{"n": 1e400, "email": "{secret}"}}}}',
    )
    result = parse_batch_file(path)
    assert len(result.issues) >= 7
    assert all(secret not in str(i) and "1e400" not in str(i) for i in result.issues)


# --- empty batches -----------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf\r\n   \r\n"])
def test_empty_batch(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    result = parse_batch_file(path)
    assert result.issues == [Issue(None, None, "error", "Empty batch: no rows found")]
    assert result.rows == [] and result.rejected == [] and not result.ok


def test_a_batch_of_only_bad_rows_is_not_empty(tmp_path: Path) -> None:
    result = parse_batch_file(write(tmp_path, "{}", "[]"))
    assert [i.line for i in result.issues] == [1, 2]


# --- sources -----------------------------------------------------------------------------------


def test_streams_from_a_binary_file_object(tmp_path: Path) -> None:
    path = write(tmp_path, row("a.mp4"), "", row("b.mp4"), newline="\r\n")
    with path.open("rb") as fh:
        result = parse_batch(fh, format="mp4")
    assert [(r.line, r.output_key) for r in result.rows] == [(1, "a.mp4"), (3, "b.mp4")]


def test_streams_lazily_from_a_generator() -> None:
    consumed: list[int] = []

    def lines() -> Iterator[bytes]:
        for i in range(1, 4):
            consumed.append(i)
            yield (row(f"{i}.mp4") + "\n").encode()

    gen = lines()
    assert consumed == []  # nothing is read before parsing
    result = parse_batch(gen)
    assert consumed == [1, 2, 3] and [r.line for r in result.rows] == [1, 2, 3]


def test_text_sources_and_items_holding_several_lines() -> None:
    text = row("a.mp4") + "\n\n" + row("b.mp4") + "\n"
    assert [r.line for r in parse_batch(io.StringIO(text)).rows] == [1, 3]
    assert [r.line for r in parse_batch([text, row("c.mp4")]).rows] == [1, 3, 4]
    assert [r.line for r in parse_batch([text.encode(), b"\n", row("c.mp4").encode()]).rows] == [
        1,
        3,
        5,
    ]
    with pytest.raises(TypeError, match="str or bytes"):
        parse_batch([1])  # type: ignore[arg-type]


# --- scale -------------------------------------------------------------------------------------


def test_100k_rows_stream_with_memory_proportional_to_kept_rows(tmp_path: Path) -> None:
    n = 100_000
    path = tmp_path / "big.jsonl"
    message = "Thanks for being with us this year, here is your personal recap video! " * 2
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(
            f'{{"outputKey": "recaps/{i:06d}.mp4", "variables": '
            f'{{"name": "Person {i}", "n": {i}, "message": "{message}"}}}}\n'
            for i in range(n)
        )
    file_bytes = path.stat().st_size

    started = time.perf_counter()
    result = parse_batch_file(path)
    seconds = time.perf_counter() - started
    assert result.ok and len(result.rows) == n and result.rows[-1].line == n
    del result

    gc_was_enabled = gc.isenabled()
    gc.disable()  # tracemalloc is slow; the parse makes no reference cycles for gc to find
    tracemalloc.start()
    try:
        result = parse_batch_file(path)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if gc_was_enabled:
            gc.enable()
    assert len(result.rows) == n
    mb = 1024 * 1024
    print(
        f"\nparse 100k rows: {seconds:.2f} s, peak {peak / mb:.1f} MB"
        f" (kept rows {kept / mb:.1f} MB, transient {(peak - kept) / mb:.1f} MB,"
        f" file {file_bytes / mb:.1f} MB)"
    )
    assert peak < 200 * mb
    assert kept < 2048 * n  # the rows themselves: well under 2 KB each
    # Streaming: beyond the rows kept, only per-row bookkeeping (the duplicate-key map) lives on.
    # Holding the file (or its list of lines) at once would add at least the file's size.
    assert peak - kept < file_bytes / 2


def test_each_row_is_found_again_at_its_byte_offset(tmp_path: Path) -> None:
    from hyperframes_airflow.contract.batch import BatchRow, RejectedRow, read_row_at

    path = tmp_path / "b.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"outputKey":"a.mp4","variables":{"n":1}}\r\n\r\n'
        b'{"outputKey":"b.mp4","variables":{"big":"' + b"x" * 10_000 + b'"}}\n'
        b'{"outputKey":"\xc3\xa9.mp4"}'
    )
    parsed = parse_batch_file(path)
    first_line = len(b'\xef\xbb\xbf{"outputKey":"a.mp4","variables":{"n":1}}\r\n')
    third_line = len(b'{"outputKey":"b.mp4","variables":{"big":"') + 10_000 + len(b'"}}\n')
    assert [(r.line, r.offset) for r in parsed.rows] == [
        (1, 0),
        (3, first_line + 2),
        (4, first_line + 2 + third_line),
    ]
    with path.open("rb") as fh:
        for row in parsed.rows:
            assert row.offset is not None
            again = read_row_at(fh, offset=row.offset, line=row.line)
            assert again == row
    # The file changed after prepare: the same position now holds something else.
    path.write_bytes(b'{"outputKey":"zzzzzz.mp4"}\n\n\n{"outputKey": 5}\n')
    with path.open("rb") as fh:
        blank = read_row_at(fh, offset=first_line + 2, line=3)
        assert isinstance(blank, RejectedRow)
        moved = read_row_at(fh, offset=0, line=1)
        assert isinstance(moved, BatchRow) and moved.output_key == "zzzzzz.mp4"


# --- values Node reads differently, and nesting later stages cannot walk -----------------------


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` levels of objects and arrays (alternating) around `leaf`."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def test_variables_nested_deeper_than_the_limit_are_rejected(tmp_path: Path) -> None:
    from hyperframes_airflow.contract.batch import MAX_VARIABLES_DEPTH

    assert MAX_VARIABLES_DEPTH == 64
    path = write(
        tmp_path,
        row("a.mp4", variables={"ok": nested(MAX_VARIABLES_DEPTH - 1)}),  # 64 levels in all
        row("b.mp4", variables={"deep": nested(MAX_VARIABLES_DEPTH)}),  # 65
        row("c.mp4", variables={"x": "y", "tree": nested(500, "secret")}),
        row("d.mp4"),
    )
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [1, 4]
    assert messages(result) == [
        "Invalid variables on line 2: variables.deep nests deeper than 64 levels of objects and"
        " arrays; flatten it",
        "Invalid variables on line 3: variables.tree nests deeper than 64 levels of objects and"
        " arrays; flatten it",
    ]
    assert [i.field for i in result.issues] == ["variables", "variables"]


def test_integers_beyond_2_to_the_53_are_rejected_by_path_never_by_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"outputKey": "a.mp4", "variables": {"n": 9007199254740991, "m": -9007199254740991,'
        ' "f": 12345678901234567890.0, "e": 1e300}}',
        '{"outputKey": "b.mp4", "variables": {"customer": {"id": 12345678901234567890}}}',
        '{"outputKey": "c.mp4", "variables": {"n": -9007199254740992, "list": [1, [2,'
        ' 9007199254740993]], "first name": {"x": 99999999999999999999}}}',
    )
    result = parse_batch_file(path)
    assert [r.line for r in result.rows] == [1]
    assert messages(result) == [
        "Invalid variables on line 2: variables.customer.id is an integer beyond"
        " ±9007199254740991 (2^53 - 1), which Node's JSON.parse would round to another value;"
        " send it as a string",
        'Invalid variables on line 3: variables.n, variables.list[1][1], variables["first name"].x'
        " are integers beyond ±9007199254740991 (2^53 - 1), which Node's JSON.parse would round"
        " to another value; send it as a string",
    ]
    for value in ("12345678901234567890", "9007199254740992", "9007199254740993", "9999999"):
        assert all(value not in str(i) for i in result.issues)


def test_one_walk_finds_depth_integers_and_surrogates_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"outputKey": "a.mp4", "variables": {"s": ["\\ud800"], "big": 9007199254740992, "d": '
        + json.dumps(nested(70))
        + "}}",
    )
    result = parse_batch_file(path)
    assert [m.split(": ", 1)[1][:30] for m in messages(result)] == [
        'lone UTF-16 surrogate in "vari',
        "variables.d nests deeper than ",
        "variables.big is an integer be",
    ]


def test_plan_batch_reports_a_500_deep_row_and_plans_the_others() -> None:
    from hyperframes_airflow.contract.composition import Composition
    from hyperframes_airflow.contract.config import RenderConfig
    from hyperframes_airflow.contract.plan import plan_batch

    lines = [
        row("a.mp4", variables={"t": "x"}),
        row("deep.mp4", variables={"t": nested(500)}),
        row("b.mp4", variables={"t": nested(10)}),
    ]
    plan = plan_batch(
        lines,
        config=RenderConfig(width=640, height=360),
        composition=Composition(),
        site_id="0123456789abcdef",
        dag_id="d",
        run_id="r",
    )
    assert [r.line for r in plan.rows] == [1, 3]
    assert [(i.line, i.field) for i in plan.issues] == [(2, "variables")]
    assert [r.line for r in plan.invalid] == [2]


# --- unknown fields --------------------------------------------------------------------------


def test_unknown_fields_warn_with_a_hint_and_are_errors_when_strict(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"outputKey": "a.mp4", "Variables": {"name": "Ada"}}',
        '{"outputkey": "b.mp4", "outputKey": "b.mp4", "variable": {}, "execution_name": "x"}',
        '{"outputKey": "c.mp4", "variables": {}, "output_keys": 1, "colour": "red"}',
        '{"outputKey": "d.mp4", "variables": {"name": "Lin"}}',
    )
    result = parse_batch_file(path)
    assert result.ok and [r.line for r in result.rows] == [1, 2, 3, 4]
    assert result.rows[0].variables == {}  # what the row really renders with: the defaults
    assert [(i.line, i.field, i.severity) for i in result.issues] == [
        (1, "Variables", "warning"),
        (2, "outputkey", "warning"),
        (2, "variable", "warning"),
        (2, "execution_name", "warning"),
        (3, "output_keys", "warning"),
        (3, "colour", "warning"),
    ]
    tail = ': a row has only "outputKey", "variables" and "executionName", so it is ignored'
    assert messages(result, 1) == [
        f'Unknown field "Variables" on line 1 (did you mean "variables"?){tail}'
    ]
    assert messages(result, 2)[2] == (
        f'Unknown field "execution_name" on line 2 (did you mean "executionName"?){tail}'
    )
    assert messages(result, 3) == [
        f'Unknown field "output_keys" on line 3 (did you mean "outputKey"?){tail}',
        f'Unknown field "colour" on line 3{tail}',
    ]

    strict = parse_batch_file(path, strict=True)
    assert [r.line for r in strict.rows] == [4]
    assert [(r.line, r.output_key) for r in strict.rejected] == [
        (1, "a.mp4"),
        (2, "b.mp4"),
        (3, "c.mp4"),
    ]
    assert {i.severity for i in strict.issues} == {"error"}
    assert strict.issues[0].message.endswith("so the row is rejected")


def test_unknown_fields_are_listed_a_few_at_a_time() -> None:
    fields = {f"f{i}": i for i in range(8)}
    result = parse_batch([json.dumps({"outputKey": "a.mp4", **fields})])
    assert [i.field for i in result.issues] == ["f0", "f1", "f2", "f3", "f4", None]
    assert result.issues[-1].message == "3 more unknown field(s) on line 1"


def test_plan_batch_passes_strict_on() -> None:
    from hyperframes_airflow.contract.composition import Composition
    from hyperframes_airflow.contract.config import RenderConfig
    from hyperframes_airflow.contract.plan import plan_batch

    def plan(strict: bool) -> Any:
        return plan_batch(
            ['{"outputKey": "a.mp4", "Variables": {}}', row("b.mp4")],
            config=RenderConfig(width=640, height=360),
            composition=Composition(),
            site_id="0123456789abcdef",
            dag_id="d",
            run_id="r",
            strict=strict,
        )

    lenient, strict = plan(False), plan(True)
    assert [r.line for r in lenient.rows] == [1, 2] and lenient.warnings and not lenient.errors
    assert [r.line for r in strict.rows] == [2] and [r.line for r in strict.invalid] == [1]


def test_shared_facts_have_one_source() -> None:
    from hyperframes_airflow.contract import batch, execution, formats

    assert batch.FORMAT_EXTENSIONS is formats.FORMAT_EXTENSIONS
    assert execution.format_extension is formats.format_extension
    assert batch.EXECUTION_NAME_MAX_LENGTH == execution.MAX_EXECUTION_NAME_LENGTH
