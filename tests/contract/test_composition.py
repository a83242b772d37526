"""Reading index.html like the Node CLI: variables schema, root attributes, frame counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperframes_airflow.contract.composition import (
    Composition,
    VariableDeclaration,
    composition_from_html,
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
    missing = read_composition(tmp_path)
    assert missing.variables == [] and missing.duration_s is None
    assert missing.model_dump(exclude={"duration_unknown_reason"}) == Composition().model_dump(
        exclude={"duration_unknown_reason"}
    )
    assert missing.duration_unknown_reason is not None
    assert "index.html" in missing.duration_unknown_reason
    assert read_composition(tmp_path / "nope").variables == []
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
        composition_id=None,
        variables=[],
        duration_s=2.0,
        duration_source="data-duration",
        width=640,
        height=360,
        fps=24,
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
    ("root_duration", "expected"),
    [(" 4.25 ", 4.25), ("3e0", 3.0), ("0x2", 2.0), ("3s", None), ("abc", None),
     ("Infinity", None), ("0", None), ("-2", None), ("", None)],
)  # fmt: skip
def test_root_duration_is_a_strict_number(
    tmp_path: Path, root_duration: str, expected: float | None
) -> None:
    # 0.8.170 reads timing attributes with `Number()` (parseStrictFiniteTimingNumber), not
    # `parseFloat`: "3s" is no duration at all, and a clip-less root has no length then.
    html = f'<html><body><div data-composition-id="p" data-duration="{root_duration}"></div>'
    comp = read_composition(_project(tmp_path, html))
    assert comp.duration_s == expected
    assert (comp.duration_unknown_reason is None) == (expected is not None)


def test_html_composition_duration_needs_the_html_to_be_the_root(tmp_path: Path) -> None:
    # The producer's compile stage reads the first [data-composition-id] element: <html> counts
    # only when it carries the id; otherwise its data-composition-duration is not read.
    html = (
        '<html data-composition-duration="9"><body>'
        '<div data-composition-id="p" data-duration="2"></div></body></html>'
    )
    assert read_composition(_project(tmp_path, html)).duration_s == 2.0


def test_root_data_duration_wins_over_data_composition_duration(tmp_path: Path) -> None:
    html = (
        '<html><body><div data-composition-id="p" data-composition-duration="9" '
        'data-duration="2"></div><div data-composition-id="q" data-composition-duration="4">'
        "</div></body></html>"
    )
    comp = read_composition(_project(tmp_path, html))
    assert (comp.duration_s, comp.duration_source) == (2.0, "data-duration")
    html = '<html><body><div data-composition-id="p" data-composition-duration="4"></div>'
    comp = read_composition(_project(tmp_path, html))
    assert (comp.duration_s, comp.duration_source) == (4.0, "data-composition-duration")


def test_no_duration_anywhere(tmp_path: Path) -> None:
    html = '<html><body><div data-composition-id="p" data-duration="NaN"></div></body></html>'
    comp = read_composition(_project(tmp_path, html))
    assert comp.duration_s is None and comp.duration_source is None
    assert comp.duration_unknown_reason is not None
    assert "no clip with a length" in comp.duration_unknown_reason
    assert 'add data-duration="<seconds>"' in comp.duration_unknown_reason


def test_variables_and_id_are_read_from_html_only_for_metadata(tmp_path: Path) -> None:
    html = (
        '<html><body><div data-composition-id="inner" data-composition-duration="9" '
        'data-duration="2"></div></body></html>'
    )
    comp = read_composition(_project(tmp_path, html))
    assert comp.composition_id is None  # the id comes from <html>
    assert comp.duration_s == 2.0  # the root's data-duration comes before its
    # data-composition-duration


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


# --- duration from clips (the 0.8.170 runtime's rule, statically) -------------------------


def _clips(tmp_path: Path, body: str, root: str = "", head: str = "") -> Composition:
    """A real project whose root composition holds `body` and declares no data-duration."""
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'>{head}</head><body>"
        f'<div id="stage" data-composition-id="main" data-width="640" data-height="360" {root}>'
        f"{body}</div></body></html>"
    )
    return read_composition(_project(tmp_path, html))


def test_latest_clip_end_when_the_root_declares_no_duration(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<div class="title" data-start="0" data-duration="2">Hi</div>'
        '<img src="logo.png" data-start="1.5" data-duration="3">'
        '<p data-start="1">stays until the end: no length of its own</p>',
    )
    assert (comp.duration_s, comp.duration_source) == (4.5, "clips")
    assert comp.duration_unknown_reason is None


def test_data_end_and_negative_starts(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<div data-start="1" data-end="6"></div><div data-start="-3" data-duration="2"></div>',
    )
    assert comp.duration_s == 6.0  # a negative start is clamped to 0: that clip ends at 2


def test_an_image_without_a_length_shows_for_three_seconds(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path, '<img src="a.png" data-start="2"><div data-start="0" data-duration="1">'
    )
    assert comp.duration_s == 5.0  # DEFAULT_IMAGE_TIMELINE_DURATION_SECONDS


@pytest.mark.parametrize(
    ("start", "end"),
    [("intro", 5.0), ("intro + 1", 6.0), ("intro - 0.5", 4.5), ("intro+.5", 5.5),
     ("intro-0.5", 3.0),  # one reference token: the id "intro-0.5", which is missing
     ("missing", 3.0), ("a b", 3.0)],
)  # fmt: skip
def test_starts_may_reference_another_clip(tmp_path: Path, start: str, end: float) -> None:
    # "<id>", "<id> + s" and "<id> - s" start when the referenced clip ends (plus the offset);
    # an unknown reference or an unparsable start falls back to 0, as the runtime does.
    comp = _clips(
        tmp_path,
        f'<div id="intro" data-start="0" data-duration="2"></div>'
        f'<div data-start="{start}" data-duration="3"></div>',
    )
    assert comp.duration_s == end


def test_a_reference_cycle_does_not_hang(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<div id="a" data-start="b" data-duration="1"></div>'
        '<div id="b" data-start="a" data-duration="1"></div>',
    )
    assert comp.duration_s is not None and comp.duration_s > 0


def test_sub_composition_clips_are_offset_by_their_host(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<div data-composition-id="scene" data-start="5" data-duration="4">'
        '<div data-start="1" data-duration="1"></div></div>'
        '<div data-start="0" data-duration="20"></div>',
    )
    # A timed sub-composition is a duration floor, and a floor wins over the plain clips
    # (`ig` in hyperframe.runtime.iife.js): the 20 s clip is cut at 9 s.
    assert comp.duration_s == 9.0


def test_timed_media_is_a_floor_that_wins_over_plain_clips(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<audio src="v.mp3" data-start="1" data-duration="3"></audio>'
        '<div data-start="0" data-duration="10"></div>',
    )
    assert (comp.duration_s, comp.duration_source) == (4.0, "clips")


def test_data_root_marks_the_root_whose_duration_counts(tmp_path: Path) -> None:
    html = (
        "<html><body>"
        '<div data-composition-id="a"><div data-start="0" data-duration="9"></div></div>'
        '<div data-composition-id="b" data-root="true" data-duration="3"></div></body></html>'
    )
    comp = read_composition(_project(tmp_path, html))
    assert (comp.duration_s, comp.duration_source) == (3.0, "data-duration")


def test_template_content_is_not_part_of_the_document(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<div data-start="0" data-duration="2"></div>'
        '<template id="card"><p data-start="0" data-duration="50"></p></template>',
    )
    assert comp.duration_s is None  # mounted at render time: its clips could count
    assert comp.duration_unknown_reason is not None
    assert "<template>" in comp.duration_unknown_reason


def test_inert_scripts_and_stylesheets_without_animation_are_fine(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<script type="application/json">{"gsap": "timeline"}</script>'
        "<script></script><noscript><script>never()</script></noscript>"
        '<div style="color: red" data-start="0" data-duration="2"></div>',
        head="<style>.a { transition: none; } /* animation: spin 9s */</style>",
    )
    assert comp.duration_s == 2.0


@pytest.mark.parametrize(
    ("body", "head", "why"),
    [
        ('<script>window.__timelines = {}</script>', "", "<script"),
        ('<script src="app.js"></script>', "", "<script"),
        ('<script type="module">import "./a.js"</script>', "", "<script"),
        ('<img src="a.png" onload="go()">', "", "onload"),
        ('<div style="animation: spin 9s linear">', "", "CSS animation"),
        ("", "<style>.a { animation-name: spin; }</style>", "CSS animation"),
        ("", '<link rel="stylesheet" href="styles.css">', "styles.css"),
        ("", "<style>@import url(more.css);</style>", "@import"),
        ('<video src="clip.mp4" data-start="0"></video>', "", "<video"),
        ('<video src="clip.mp4" data-start="0" data-end="4"></video>', "", "<video"),
        ('<audio src="a.mp3" data-start="2"></audio>', "", "<audio"),
        ('<div data-composition-id="intro" data-composition-src="intro.html" data-start="0">',
         "", "intro.html"),
        ('<div data-composition-id="scene" data-start="0"></div>', "", "scene"),
        ('<div data-lottie-src="a.json" data-start="0" data-duration="2"></div>', "", "Lottie"),
        ('<img src="party.GIF" data-start="0" data-duration="2">', "", "GIF"),
        ("<template><script>gsap.timeline()</script></template>", "", "<template>"),
    ],
)  # fmt: skip
def test_lengths_only_known_when_rendered_make_the_duration_unknown(
    tmp_path: Path, body: str, head: str, why: str
) -> None:
    comp = _clips(tmp_path, '<div data-start="0" data-duration="2"></div>' + body, head=head)
    assert comp.duration_s is None and comp.duration_source is None
    reason = comp.duration_unknown_reason
    assert reason is not None and why in reason, reason
    assert 'add data-duration="<seconds>" to the root composition' in reason


def test_a_root_duration_makes_everything_else_irrelevant(tmp_path: Path) -> None:
    comp = _clips(
        tmp_path,
        '<script>gsap.timeline()</script><video src="v.mp4" data-start="0"></video>',
        root='data-duration="7"',
    )
    assert (comp.duration_s, comp.duration_source) == (7.0, "data-duration")


def test_no_composition_at_all(tmp_path: Path) -> None:
    comp = read_composition(_project(tmp_path, "<html><body><p>hi</p></body></html>"))
    assert comp.duration_s is None
    assert comp.duration_unknown_reason is not None
    assert "data-composition-id" in comp.duration_unknown_reason


def test_the_example_template(tmp_path: Path) -> None:
    from tests.conftest import REPO

    comp = read_composition(REPO / "examples" / "templates" / "welcome")
    assert (comp.duration_s, comp.duration_source) == (2.0, "data-duration")


def test_composition_from_html_is_the_parser_read_composition_uses(tmp_path: Path) -> None:
    html = (
        f"<html data-composition-id='x' data-composition-variables='{json.dumps([TITLE])}'>"
        '<body><div data-composition-id="x" data-width="320" data-height="240" data-fps="24">'
        '<div data-start="0" data-duration="1.5"></div></div></body></html>'
    )
    from_dir = read_composition(_project(tmp_path, html))
    assert composition_from_html(html) == from_dir
    assert composition_from_html(b"\xef\xbb\xbf" + html.encode()) == from_dir
    assert from_dir.duration_s == 1.5 and from_dir.width == 320


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
