"""Reading index.html like the Node CLI: variables schema, root attributes, frame counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperframes_airflow.contract.composition import (
    Composition,
    VariableDeclaration,
    frame_count,
    parse_variable_declarations,
    read_composition,
)

TITLE = {"id": "title", "type": "string", "label": "Headline", "default": "Welcome"}
ACCENT = {"id": "accent", "type": "color", "label": "Accent", "default": "#6d5dfc"}


def _project(tmp_path: Path, html: str) -> Path:
    (tmp_path / "index.html").write_text(html, encoding="utf-8")
    return tmp_path


# --- parse_variable_declarations ----------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "not json", "{}", '"x"', "1", "null", "[NaN]"])
def test_missing_invalid_or_non_array_gives_empty(value: str | None) -> None:
    assert parse_variable_declarations(value) == []


def test_valid_entries_keep_order_and_raw() -> None:
    extra = {**TITLE, "maxLength": 40, "description": "Shown big"}
    decls = parse_variable_declarations(json.dumps([extra, ACCENT]))
    assert [d.id for d in decls] == ["title", "accent"]
    assert decls[0].type == "string" and decls[0].label == "Headline"
    assert decls[0].default == "Welcome" and decls[0].description == "Shown big"
    assert decls[0].raw == extra
    assert decls[1].description is None and decls[1].options is None


def test_every_type_with_a_matching_default_is_kept() -> None:
    entries = [
        {"id": "s", "type": "string", "label": "S", "default": ""},
        {"id": "n", "type": "number", "label": "N", "default": 1.5},
        {"id": "i", "type": "number", "label": "I", "default": 0},
        {"id": "c", "type": "color", "label": "C", "default": "#fff"},
        {"id": "b", "type": "boolean", "label": "B", "default": False},
        {"id": "e", "type": "enum", "label": "E", "default": "a", "options": []},
        {"id": "f", "type": "font", "label": "F", "default": "Inter"},
        {"id": "m", "type": "image", "label": "M", "default": "https://x/y.png"},
    ]
    decls = parse_variable_declarations(json.dumps(entries))
    assert [d.id for d in decls] == ["s", "n", "i", "c", "b", "e", "f", "m"]


@pytest.mark.parametrize(
    "entry",
    [
        "title",
        ["title"],
        None,
        {**TITLE, "id": 1},
        {**TITLE, "label": None},
        {k: v for k, v in TITLE.items() if k != "label"},
        {**TITLE, "type": "text"},
        {**TITLE, "type": "constructor"},
        {k: v for k, v in TITLE.items() if k != "default"},
        {**TITLE, "default": None},
        {**TITLE, "type": "number", "default": "1"},
        {**TITLE, "type": "number", "default": True},  # a bool is not a JS number
        {**TITLE, "type": "boolean", "default": 0},
        {**TITLE, "type": "color", "default": 0},
        {**TITLE, "type": "enum", "default": "a"},  # no options
        {**TITLE, "type": "enum", "default": "a", "options": {"a": "A"}},
        {**TITLE, "type": "font", "default": {"name": "Inter", "source": "x"}},
        {**TITLE, "type": "image", "default": {"url": "x"}},
    ],
)
def test_malformed_entries_are_dropped_silently(entry: object) -> None:
    decls = parse_variable_declarations(json.dumps([entry, ACCENT]))
    assert [d.id for d in decls] == ["accent"]


def test_enum_options_are_kept_raw() -> None:
    options = [{"value": "a", "label": "A"}, "junk"]
    entry = {"id": "e", "type": "enum", "label": "E", "default": "a", "options": options}
    (decl,) = parse_variable_declarations(json.dumps([entry]))
    assert decl.options == options


def test_declaration_is_frozen() -> None:
    (decl,) = parse_variable_declarations(json.dumps([TITLE]))
    assert isinstance(decl, VariableDeclaration)
    with pytest.raises(Exception, match="frozen"):
        decl.label = "x"


# --- read_composition ---------------------------------------------------------------------


def test_single_quoted_json_on_html(tmp_path: Path) -> None:
    attr = json.dumps([TITLE, ACCENT])
    html = (
        f"<!doctype html><html data-composition-id='promo' data-composition-variables='{attr}'>"
        "<body></body></html>"
    )
    comp = read_composition(_project(tmp_path, html))
    assert comp.composition_id == "promo"
    assert [v.id for v in comp.variables] == ["title", "accent"]


def test_entity_encoded_attribute_is_decoded(tmp_path: Path) -> None:
    attr = json.dumps([{**TITLE, "default": "Tom & Jerry"}]).replace("&", "&amp;")
    attr = attr.replace('"', "&quot;")
    html = f'<html data-composition-variables="{attr}"><body></body></html>'
    (decl,) = read_composition(_project(tmp_path, html)).variables
    assert decl.default == "Tom & Jerry"


def test_numeric_character_references_are_decoded(tmp_path: Path) -> None:
    attr = json.dumps([TITLE]).replace('"', "&#34;").replace("Welcome", "Caf&#xE9;")
    html = f'<html data-composition-variables="{attr}"></html>'
    (decl,) = read_composition(_project(tmp_path, html)).variables
    assert decl.default == "Café"


def test_malformed_entries_dropped_from_file(tmp_path: Path) -> None:
    attr = json.dumps([TITLE, {"id": "broken", "type": "number", "default": "3"}, ACCENT])
    html = f"<html data-composition-variables='{attr}'></html>"
    comp = read_composition(_project(tmp_path, html))
    assert [v.id for v in comp.variables] == ["title", "accent"]


def test_invalid_json_gives_empty_schema(tmp_path: Path) -> None:
    html = "<html data-composition-variables='[{\"id\": '></html>"
    assert read_composition(_project(tmp_path, html)).variables == []


def test_missing_file_is_an_empty_composition(tmp_path: Path) -> None:
    assert read_composition(tmp_path) == Composition()
    assert read_composition(tmp_path / "nope") == Composition(variables=[])
    (tmp_path / "dir" / "index.html").mkdir(parents=True)
    assert read_composition(tmp_path / "dir").variables == []


def test_root_element_supplies_size_duration_and_fps(tmp_path: Path) -> None:
    html = (
        "<!doctype html><html><head><title>t</title></head><body>"
        '<div id="stage" data-composition-id="probe" data-start="0" data-width="640" '
        'data-height="360" data-duration="2" data-fps="24"></div></body></html>'
    )
    comp = read_composition(_project(tmp_path, html))
    assert comp == Composition(
        composition_id=None, variables=[], duration_s=2.0, width=640, height=360, fps=24
    )


def test_html_duration_wins_over_root(tmp_path: Path) -> None:
    html = (
        '<html data-composition-id="p" data-composition-duration="7.5"><body>'
        '<div data-composition-id="p" data-duration="2" data-width="1920" data-height="1080">'
        "</div></body></html>"
    )
    comp = read_composition(_project(tmp_path, html))
    assert comp.duration_s == 7.5
    assert (comp.width, comp.height) == (1920, 1080)


@pytest.mark.parametrize(
    ("html_duration", "expected"),
    [("3s", 3.0), (" 4.25 ", 4.25), ("abc", 2.0), ("Infinity", 2.0), ("0", 2.0), ("", 2.0)],
)
def test_html_duration_uses_parse_float(
    tmp_path: Path, html_duration: str, expected: float
) -> None:
    html = (
        f'<html data-composition-duration="{html_duration}"><body>'
        '<div data-composition-id="p" data-duration="2"></div></body></html>'
    )
    assert read_composition(_project(tmp_path, html)).duration_s == expected


def test_no_duration_anywhere(tmp_path: Path) -> None:
    html = '<html><body><div data-composition-id="p" data-duration="NaN"></div></body></html>'
    assert read_composition(_project(tmp_path, html)).duration_s is None


def test_variables_and_id_are_read_from_html_only_for_metadata(tmp_path: Path) -> None:
    html = (
        '<html><body><div data-composition-id="inner" data-composition-duration="9" '
        'data-duration="2"></div></body></html>'
    )
    comp = read_composition(_project(tmp_path, html))
    assert comp.composition_id is None  # the id comes from <html>
    assert comp.duration_s == 2.0  # data-composition-duration counts on <html> only


def test_first_composition_element_is_the_root(tmp_path: Path) -> None:
    html = (
        "<html><body>"
        '<div data-composition-id="main" data-width="1280" data-height="720">'
        '<div data-composition-id="child" data-width="100" data-height="100"></div>'
        "</div></body></html>"
    )
    comp = read_composition(_project(tmp_path, html))
    assert (comp.width, comp.height) == (1280, 720)


def test_data_root_true_marks_the_root(tmp_path: Path) -> None:
    html = (
        "<html><body>"
        '<div data-composition-id="a" data-fps="60" data-width="100" data-height="100"></div>'
        '<div data-composition-id="b" data-root="true" data-fps="24" data-width="200" '
        'data-height="200"></div></body></html>'
    )
    comp = read_composition(_project(tmp_path, html))
    assert (comp.fps, comp.width) == (24, 200)


@pytest.mark.parametrize(
    ("value", "fps"),
    [("30", 30), ("60.0", 60), (" 24 ", 24), ("3e1", 30), ("0x1E", 30), ("25", None),
     ("29.97", None), ("30fps", None), ("", None)],
)  # fmt: skip
def test_fps_counts_only_distributed_values(tmp_path: Path, value: str, fps: int | None) -> None:
    html = f'<html><body><div data-composition-id="p" data-fps="{value}"></div></body></html>'
    assert read_composition(_project(tmp_path, html)).fps == fps


@pytest.mark.parametrize(
    ("value", "expected"), [("640", 640), ("640px", 640), ("640.7", 640), ("0", None), ("x", None)]
)
def test_dimensions_use_parse_int(tmp_path: Path, value: str, expected: int | None) -> None:
    html = f'<html><body><div data-composition-id="p" data-width="{value}"></div></body></html>'
    assert read_composition(_project(tmp_path, html)).width == expected


def test_html_element_is_the_root_when_nothing_else_is(tmp_path: Path) -> None:
    html = '<html data-composition-id="x" data-width="320" data-height="240"></html>\n'
    comp = read_composition(_project(tmp_path, html))
    assert (comp.composition_id, comp.width, comp.height) == ("x", 320, 240)


def test_root_declarations_merge_after_html_ones(tmp_path: Path) -> None:
    html_attr = json.dumps([TITLE, ACCENT])
    root_attr = json.dumps(
        [
            {**TITLE, "label": "Root title"},
            {"id": "n", "type": "number", "label": "N", "default": 1},
        ]
    )
    html = (
        f"<html data-composition-variables='{html_attr}'><body>"
        f"<div data-composition-id='p' data-composition-variables='{root_attr}'></div>"
        "</body></html>"
    )
    comp = read_composition(_project(tmp_path, html))
    assert [(v.id, v.label) for v in comp.variables] == [
        ("title", "Root title"),
        ("accent", "Accent"),
        ("n", "N"),
    ]


def test_first_attribute_wins_and_comments_are_ignored(tmp_path: Path) -> None:
    html = (
        "<!-- <html data-composition-id='commented'> -->"
        '<html data-composition-id="first" data-composition-id="second"><body>'
        '<script>const s = "<div data-composition-id=\\"fake\\" data-width=\\"10\\">";</script>'
        '<div data-composition-id="p" data-width="640"></div></body></html>'
    )
    comp = read_composition(_project(tmp_path, html))
    assert comp.composition_id == "first"
    assert comp.width == 640


def test_bom_and_invalid_utf8_are_tolerated(tmp_path: Path) -> None:
    attr = json.dumps([TITLE])
    body = f"<html data-composition-id='x' data-composition-variables='{attr}'>\xff</html>"
    (tmp_path / "index.html").write_bytes(b"\xef\xbb\xbf" + body.encode("latin-1"))
    comp = read_composition(tmp_path)
    assert comp.composition_id == "x" and [v.id for v in comp.variables] == ["title"]


def test_accepts_str_paths(tmp_path: Path) -> None:
    _project(tmp_path, "<html data-composition-id='s'></html>")
    assert read_composition(str(tmp_path)).composition_id == "s"


# --- frame_count --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "fps", "frames"),
    [
        (60, 30, 1800),
        (2, 30, 60),
        (0.1 * 3, 30, 9),  # 8.999999999999998 snaps to 9
        (1 / 3, 30, 10),
        (1.0005, 30, 31),  # 30.015 is more than 1e-3 away from 30: ceil
        (1.00003, 30, 30),  # 30.0009 is within 1e-3 of 30
        (10.01, 24, 241),  # 240.24 → ceil
        (0.5 / 30, 30, 1),  # 0.5 is not within 1e-3 of round(0.5)=1: ceil
        (0, 30, 0),
        (1.99999, 60, 120),  # 119.9994 snaps to 120
    ],
)
def test_frame_count(duration: float, fps: int, frames: int) -> None:
    assert frame_count(duration, fps) == frames


def test_frame_count_snaps_only_within_tolerance() -> None:
    assert frame_count(2.5, 1) == 3  # half a frame is never within 1e-3: ceil
    assert frame_count(2.4995, 1) == 3
    assert frame_count(2.0005, 1) == 2  # 5e-4 above a whole frame: snapped down
    assert frame_count(1.9995, 1) == 2  # 5e-4 below: snapped up


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\ufeff\u3000\u2028640", 640),  # JS whitespace: trimmed, as parseInt does
        ("\u0085640", None),  # U+0085 is Python whitespace, not JS: parseInt gives NaN
        ("\u001c640", None),  # U+001C likewise (raw: the HTML parser drops a &#x1C; reference)
    ],
)
def test_attributes_are_trimmed_like_js(tmp_path: Path, value: str, expected: int | None) -> None:
    html = f'<html><body><div data-composition-id="p" data-width="{value}"></div></body></html>'
    assert read_composition(_project(tmp_path, html)).width == expected
