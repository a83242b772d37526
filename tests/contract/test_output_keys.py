"""Keys that pass the basic rules but could not be written: folders, names, look-alikes."""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from hyperframes_airflow.contract.batch import (
    DEFAULT_RESERVED_PREFIXES,
    BatchParseResult,
    parse_batch,
    parse_batch_file,
)


def row(key: str, **extra: Any) -> str:
    return json.dumps({"outputKey": key, **extra}, ensure_ascii=False)


def parse(*keys: str, **kwargs: Any) -> BatchParseResult:
    return parse_batch([row(k) for k in keys], **kwargs)


def messages(result: BatchParseResult, line: int | None = None) -> list[str]:
    return [i.message for i in result.issues if line is None or i.line == line]


# --- (a) a file and a folder on one path --------------------------------------------------------


def test_a_key_under_an_earlier_file_is_rejected() -> None:
    result = parse("v/x.mp4", "v/y.mp4", "v/x.mp4/y.mp4")
    assert [r.line for r in result.rows] == [1, 2]
    assert [(i.line, i.field, i.severity) for i in result.issues] == [(3, "outputKey", "error")]
    assert messages(result) == [
        'outputKey "v/x.mp4/y.mp4" on line 3 needs "v/x.mp4" to be a folder, but line 1 writes a'
        " file there: a file and a folder cannot share a path."
    ]
    assert result.rejected[0].output_key == "v/x.mp4/y.mp4"
    assert result.rejected[0].errors == result.issues


def test_a_file_where_an_earlier_key_needs_a_folder_is_rejected() -> None:
    result = parse("v/x.mp4/deep/y.mp4", "ok.mp4", "v/x.mp4")
    assert [r.line for r in result.rows] == [1, 2]
    assert messages(result) == [
        'outputKey "v/x.mp4" on line 3 is a folder of line 1\'s "v/x.mp4/deep/y.mp4": a file and'
        " a folder cannot share a path."
    ]


def test_folder_conflicts_join_a_line_s_other_errors_in_line_order() -> None:
    result = parse_batch(
        [row("a.mp4"), row("a.mp4/b.mp4", executionName="bad name"), row("c.mp4"), "{}"]
    )
    assert [(i.line, i.field) for i in result.issues] == [
        (2, "executionName"),
        (2, "outputKey"),
        (4, "outputKey"),
    ]
    assert [(r.line, len(r.errors)) for r in result.rejected] == [(2, 2), (4, 1)]
    assert [r.line for r in result.rows] == [1, 3]


def test_keys_with_problems_of_their_own_take_no_part_in_folder_checks() -> None:
    # "a.mov" is wrong for mp4 anyway: fixing it changes the key, so nothing conflicts yet.
    result = parse("a.mov", "a.mov/b.mp4")
    assert [r.line for r in result.rows] == [2]


def test_folder_checks_stay_linear_for_100k_keys() -> None:
    keys = [f"recaps/{i // 1000}/{i:06d}.mp4" for i in range(100_000)]
    started = time.perf_counter()
    result = parse(*keys, "recaps/7/007001.mp4/x.mp4")
    seconds = time.perf_counter() - started
    assert len(result.rows) == 100_000 and [i.line for i in result.issues] == [100_001]
    assert seconds < 10


# --- (b) and (c) names file systems refuse or hide ----------------------------------------------


def test_a_path_segment_over_255_bytes_is_rejected() -> None:
    fits = "é" * 127 + "x"  # 255 bytes
    result = parse(f"{fits}/x.mp4", f"a/{'é' * 128}/b.mp4", "k" * 296 + ".mp4")
    assert [r.line for r in result.rows] == [1]
    assert messages(result, 2) == [
        f'Unsafe outputKey "a/{"é" * 118}…" on line 2: has a path segment of 256 UTF-8 bytes'
        f' ("{"é" * 40}…"); file systems limit a file or folder name to 255 bytes'
    ]
    assert "has a path segment of 300 UTF-8 bytes" in messages(result, 3)[0]


@pytest.mark.parametrize("key", [".mp4", "dir/.mp4", "dir/.hidden.mp4", ".MP4"])
def test_a_file_name_starting_with_a_dot_is_rejected(key: str) -> None:
    result = parse(key)
    name = key.rpartition("/")[2]
    assert messages(result) == [
        f'Unsafe outputKey "{key}" on line 1: its file name "{name}" starts with ".": a hidden'
        " file, or only an extension with no name"
    ]


@pytest.mark.parametrize("key", ["a.b.mp4", ".dir/x.mp4", "dir/x..mp4", "dir/...x/x.mp4"])
def test_dots_elsewhere_are_fine(key: str) -> None:
    assert parse(key).ok


# --- (d) keys that differ only by case or normalisation ----------------------------------------


def test_keys_differing_by_case_warn_on_the_later_line() -> None:
    result = parse("Reports/A.mp4", "other.mp4", "reports/a.mp4", "REPORTS/A.MP4")
    assert result.ok and len(result.rows) == 4
    assert [(i.line, i.field, i.severity) for i in result.issues] == [
        (3, "outputKey", "warning"),
        (4, "outputKey", "warning"),
    ]
    assert messages(result, 3) == [
        'outputKey "reports/a.mp4" on line 3 differs from the key of line 1 only by letter case'
        " or Unicode normalisation: on case-insensitive or normalising file systems (macOS,"
        " Windows, SMB shares) both name one file."
    ]
    assert "key of line 1 only" in messages(result, 4)[0]


def test_keys_differing_by_unicode_normalisation_warn() -> None:
    nfc = unicodedata.normalize("NFC", "caf\u00e9/\u00c5.mp4")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    result = parse(nfc, nfd, "CAFÉ/å.mp4", "cafe/a.mp4")
    assert [(i.line, i.severity) for i in result.issues] == [(2, "warning"), (3, "warning")]
    assert "key of line 1 only" in messages(result, 2)[0]
    assert "key of line 1 only" in messages(result, 3)[0]


def test_exact_duplicates_stay_errors_and_do_not_also_warn() -> None:
    result = parse("a.mp4", "A.mp4", "a.mp4")
    assert [(i.line, i.severity) for i in result.issues] == [(2, "warning"), (3, "error")]


# --- (e) invisible and bidirectional characters -------------------------------------------------


INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180f\u200b\u200f\u202a\u202e"
    "\u2060\u2064\u2066\u206f\u3164\ufe00\ufe0f\ufeff\uffa0\U000e0000\U000e0fff"
)


@pytest.mark.parametrize("char", list(INVISIBLE))
def test_every_invisible_or_bidi_character_is_rejected(char: str) -> None:
    result = parse(f"a{char}b.mp4")
    (message,) = messages(result)
    code = f"U+{ord(char):04X}"
    assert message.endswith(
        f"must not contain invisible or bidirectional-control characters (found {code}): they"
        " make different keys look the same"
    )
    assert char not in message  # the quoted key shows it escaped, never raw


def test_invisible_characters_are_listed_once_each_in_order() -> None:
    result = parse("x\u202e\u200b\u202e4pm.mp4")
    (message,) = messages(result)
    assert message == (
        'Unsafe outputKey "x\\u202e\\u200b\\u202e4pm.mp4" on line 1: must not contain invisible'
        " or bidirectional-control characters (found U+200B, U+202E): they make different keys"
        " look the same"
    )


def test_visible_non_ascii_keys_are_fine() -> None:
    assert parse("résumé/日本語/Ünïcödé 🎬.mp4", "a\u00a0b.mp4").ok


# --- (f) reserved prefixes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("sites/x.mp4", "deployed sites live there"),
        ("renders/x.mp4", "the stack's scratch space, expired after 7 days by its lifecycle rule"),
        (".hyperframes/renders/x.mp4", "the local backend keeps its render records there"),
        ("manifests/x.mp4", "batch manifests are written there by default"),
    ],
)
def test_default_reserved_prefixes_say_why(key: str, reason: str) -> None:
    prefix = key.split("/")[0]
    assert messages(parse(key)) == [
        f'Unsafe outputKey "{key}" on line 1: must not be under the reserved prefix "{prefix}/"'
        f" ({reason})"
    ]


def test_reserved_prefixes_stay_overridable(tmp_path: Path) -> None:
    assert DEFAULT_RESERVED_PREFIXES == ("sites/", "renders/", ".hyperframes/", "manifests/")
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join([row("renders/a.mp4"), row("manifests/b.mp4")]))
    assert parse_batch_file(path, reserved_prefixes=()).ok
    only_sites = parse_batch_file(path, reserved_prefixes=("sites/",))
    assert only_sites.ok
