"""Read a HyperFrames project's `index.html` the way the Node CLI does.

The CLI validates batch variables against the schema declared in `data-composition-variables`
and sizes renders from the root composition's attributes. We read the same attributes with the
stdlib HTML parser (entities decoded as a browser does) so that `prepare_batch` reports the same
problems as `hyperframes lambda render-batch` would, before any cloud call.
"""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from hyperframes_airflow.contract._js import js_trim, js_typeof
from hyperframes_airflow.contract.config import DISTRIBUTED_FPS

__all__ = [
    "Composition",
    "DurationSource",
    "VariableDeclaration",
    "VariableType",
    "composition_from_html",
    "frame_count",
    "parse_variable_declarations",
    "read_composition",
]

VariableType = Literal["string", "number", "color", "boolean", "enum", "font", "image"]

_VARIABLE_TYPES: frozenset[str] = frozenset(get_args(VariableType))

# `typeof default` each declared type requires (`isCompositionVariable`, contract §6.1).
_DEFAULT_TYPEOF: dict[str, str] = {
    "string": "string",
    "number": "number",
    "color": "string",
    "boolean": "boolean",
    "enum": "string",
    "font": "string",
    "image": "string",
}

# The producer's frame-boundary tolerance in `durationToFrameCount` (probeStage.ts).
_FRAME_BOUNDARY_EPSILON = 1e-3


class VariableDeclaration(BaseModel):
    """One valid entry of `data-composition-variables`; `raw` keeps the entry as authored so
    per-type extras (`min`, `maxLength`, `source`, ...) stay available without modelling them."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: VariableType
    label: str
    default: Any
    description: str | None = None
    options: list[Any] | None = None
    raw: dict[str, Any]


#: Where a known duration came from: the root's attribute, or the latest clip end.
DurationSource = Literal["data-duration", "data-composition-duration", "clips"]


class Composition(BaseModel):
    """What the client can know about a project before rendering it.

    `duration_s` is the length HyperFrames 0.8.170 renders, when it can be known without a
    browser: the root's `data-duration` (or `data-composition-duration`), else the latest clip
    end by the runtime's rule (`duration_source="clips"`). When it cannot, `duration_s` is None
    and `duration_unknown_reason` says why, in words fit for a cost-gate message.
    """

    model_config = ConfigDict(frozen=True)

    composition_id: str | None = None
    variables: list[VariableDeclaration] = []
    duration_s: float | None = None
    duration_source: DurationSource | None = None
    duration_unknown_reason: str | None = None
    width: int | None = None
    height: int | None = None
    fps: int | None = None


# --- JS value semantics -------------------------------------------------------------------


def _is_composition_variable(entry: Any) -> bool:
    """Port of `isCompositionVariable`: the CLI drops entries failing it without a word."""
    if not isinstance(entry, dict):
        return False
    if not isinstance(entry.get("id"), str) or not isinstance(entry.get("label"), str):
        return False
    var_type = entry.get("type")
    if not isinstance(var_type, str) or var_type not in _VARIABLE_TYPES:
        return False
    if "default" not in entry or js_typeof(entry["default"]) != _DEFAULT_TYPEOF[var_type]:
        return False
    return not (var_type == "enum" and not isinstance(entry.get("options"), list))


def _reject_constant(name: str) -> Any:
    """`JSON.parse` has no NaN/Infinity literals; Python's `json` does unless told otherwise."""
    raise ValueError(f"invalid JSON constant {name}")


def parse_variable_declarations(attr_value: str | None) -> list[VariableDeclaration]:
    """Parse a `data-composition-variables` value like `parseCompositionVariables`: a missing
    attribute, invalid JSON or a non-array give `[]`; malformed entries are dropped silently."""
    if not attr_value:
        return []
    try:
        parsed = json.loads(attr_value, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return []
    if not isinstance(parsed, list):
        return []
    declarations: list[VariableDeclaration] = []
    for entry in parsed:
        if not _is_composition_variable(entry):
            continue
        description = entry.get("description")
        options = entry.get("options")
        declarations.append(
            VariableDeclaration(
                id=entry["id"],
                type=entry["type"],
                label=entry["label"],
                default=entry["default"],
                description=description if isinstance(description, str) else None,
                options=options if isinstance(options, list) else None,
                raw=entry,
            )
        )
    return declarations


def _merge_declarations(*groups: list[VariableDeclaration]) -> list[VariableDeclaration]:
    """Merge by id like `new Map([...a, ...b])`: a later duplicate replaces the value but keeps
    the first occurrence's position."""
    merged: dict[str, VariableDeclaration] = {}
    for group in groups:
        for declaration in group:
            merged[declaration.id] = declaration
    return list(merged.values())


_JS_PARSE_FLOAT = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", re.ASCII)
_JS_PARSE_INT = re.compile(r"[+-]?\d+", re.ASCII)
_JS_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_JS_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_RADIX_BASES = {"x": 16, "o": 8, "b": 2}
# The old private name of the shared `js_trim`, for code written against it.
_js_trim = js_trim


def _js_parse_float(text: str) -> float:
    """`parseFloat`: the longest numeric prefix after leading whitespace, else NaN."""
    match = _JS_PARSE_FLOAT.match(js_trim(text))
    if match is None:
        return math.nan
    return float(match.group().replace("Infinity", "inf"))


def _js_parse_int(text: str) -> int | None:
    """`parseInt(text, 10)`: the leading integer after whitespace, or None for NaN."""
    match = _JS_PARSE_INT.match(js_trim(text))
    return int(match.group()) if match else None


def _js_number(text: str) -> float:
    """`Number(text)` for the literal forms an attribute can hold."""
    text = js_trim(text)
    if text == "":
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text)
    if text in ("Infinity", "+Infinity", "-Infinity"):
        return float(text.replace("Infinity", "inf"))
    radix = _JS_RADIX.fullmatch(text)
    if radix:
        try:
            return float(int(radix.group(2), _RADIX_BASES[radix.group(1).lower()]))
        except ValueError:
            return math.nan
    return math.nan


def _positive_int(value: str | None) -> int | None:
    """`parseInt(attr, 10)` kept only when positive, as the CLI's dimension check does."""
    if value is None:
        return None
    parsed = _js_parse_int(value)
    return parsed if parsed is not None and parsed > 0 else None


def _distributed_fps(value: str | None) -> int | None:
    """The root `data-fps` when it is one of the fps cloud renders support, as
    `defaultCloudFps` reads it; anything else means "no usable fps"."""
    if value is None or not js_trim(value):
        return None
    number = _js_number(value)
    for fps in DISTRIBUTED_FPS:
        if number == fps:
            return fps
    return None


# --- HTML scan ----------------------------------------------------------------------------

#: Elements without an end tag (the HTML parser's "void" elements).
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta",
     "param", "source", "track", "wbr"}
)  # fmt: skip
#: Elements whose children a browser never puts in the document: `<template>` content lives in
#: a separate fragment and `<noscript>` is raw text when scripting is on.
_INERT_TAGS = frozenset({"template", "noscript"})
#: Where `<x/>` really closes the element (SVG and MathML); in HTML it is an open tag.
_FOREIGN_TAGS = frozenset({"svg", "math"})


class _Element:
    """One element of the parsed document: enough DOM for `closest`/`querySelectorAll`."""

    __slots__ = ("attrs", "children", "inert", "parent", "tag", "text")

    def __init__(self, tag: str, attrs: dict[str, str], parent: _Element | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[_Element] = []
        #: Inside `<template>`/`<noscript>`: not part of the document a browser builds.
        self.inert: bool = parent is not None and (parent.inert or parent.tag in _INERT_TAGS)
        self.text = ""  # `<script>`/`<style>` content

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    def has(self, name: str) -> bool:
        return name in self.attrs

    def closest_composition(self) -> _Element | None:
        """`el.closest("[data-composition-id]")` (the element itself included)."""
        node: _Element | None = self
        while node is not None:
            if node.has("data-composition-id"):
                return node
            node = node.parent
        return None

    def descendants(self) -> list[_Element]:
        """`querySelectorAll("*")`: descendants in document order, the element excluded."""
        out: list[_Element] = []
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def describe(self) -> str:
        """`<video id="intro">`-style label for messages (no variable values: attributes only)."""
        for name in ("id", "data-composition-id", "src", "href"):
            value = self.attrs.get(name)
            if value:
                shown = value if len(value) <= 60 else value[:57] + "..."
                return f'<{self.tag} {name}="{shown}">'
        return f"<{self.tag}>"


class _DocumentParser(HTMLParser):
    """Build the element tree and keep the attributes the metadata lookups need."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # A browser always has exactly one <html> element, first, holding everything else.
        self.html = _Element("html", {}, None)
        self.elements: list[_Element] = [self.html]  # document order, inert ones included
        self._stack: list[_Element] = [self.html]
        self._raw_text: _Element | None = None

    @staticmethod
    def _attr_map(attrs: list[tuple[str, str | None]]) -> dict[str, str]:
        amap: dict[str, str] = {}
        for name, value in attrs:
            amap.setdefault(name, "" if value is None else value)  # browsers keep the first
        return amap

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, self_closing=True)

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], *, self_closing: bool) -> None:
        amap = self._attr_map(attrs)
        if tag == "html":
            # A stray later <html> tag only adds attributes the document element lacks.
            for name, value in amap.items():
                self.html.attrs.setdefault(name, value)
            return
        parent = self._stack[-1]
        element = _Element(tag, amap, parent)
        parent.children.append(element)
        self.elements.append(element)
        foreign = any(node.tag in _FOREIGN_TAGS for node in self._stack)
        if tag in _VOID_TAGS or (self_closing and foreign):
            return
        self._stack.append(element)
        if tag in ("script", "style"):
            self._raw_text = element

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._raw_text = None
        for depth in range(len(self._stack) - 1, 0, -1):
            if self._stack[depth].tag == tag:
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if self._raw_text is not None:
            self._raw_text.text += data


def _parse(text: str) -> _DocumentParser:
    parser = _DocumentParser()
    parser.feed(text)
    parser.close()
    return parser


def _root_attrs(doc: _DocumentParser) -> tuple[dict[str, str] | None, bool]:
    """The root composition's attributes and whether the root is `<html>` itself: an element
    marked `data-root="true"` first (as the CLI's fps lookup), else the first element with
    `data-composition-id`, else `<html>` when it carries the id."""
    html = doc.html.attrs
    if "data-composition-id" in html and html.get("data-root") == "true":
        return html, True
    others = [e for e in doc.elements[1:] if e.has("data-composition-id")]
    marked = next((e for e in others if e.get("data-root") == "true"), None)
    root = marked or (others[0] if others else None)
    if root is not None:
        return root.attrs, False
    if "data-composition-id" in html:
        return html, True
    return None, False


# --- duration: the producer's and the runtime's rule, statically ----------------------------
#
# HyperFrames 0.8.170 (the installed CLI's dist/) decides a render's length in two steps:
#
# 1. Compile stage (`compileForRender`, chunk-4RXJG3SY.js): the first element matching
#    `[data-composition-id]` (<html> included) is the root; `staticDuration` is its
#    `data-duration`, else its `data-composition-duration`, each read with
#    `parseStrictFiniteTimingNumber` (`Number()`, blank = absent). When positive it is used as is
#    ("Using static duration from data-duration attribute").
# 2. Otherwise the probe stage loads the page and reads `window.__hf.duration`, which the runtime
#    (hyperframe.runtime.iife.js, `ig`) computes as: the runtime root's (`data-root="true"` first)
#    positive `data-duration`; else the root GSAP timeline's length, at least the "floors"; else
#    the floors: timed `<video>`/`<audio>` ends (`data-duration` or the media file's length),
#    timed sub-compositions directly under the root, and CSS/WAAPI/Lottie animation ends; else
#    the latest end among the root's `[data-start]` clips (unresolved, i.e. a failed render, when
#    a media or sub-composition clip has no known length).
#
# Timelines, animations and media lengths exist only in the browser, so we port the clip rule
# only for documents where none of them can contribute, and otherwise say why the length is
# unknown (fail closed: a cost gate must not pass on a guess).

#: The runtime ignores lengths up to one frame at 60 fps (`MIN_VALID_TIMELINE_DURATION_SECONDS`).
_MIN_VALID_SECONDS = 1 / 60
#: `DEFAULT_IMAGE_TIMELINE_DURATION_SECONDS`: an `<img>` clip with no length shows for 3 s.
_DEFAULT_IMAGE_SECONDS = 3.0
_MEDIA_TAGS = frozenset({"video", "audio"})
#: A bare reference token (`tm` in the runtime): `data-start="intro"`.
_REFERENCE_TOKEN = re.compile(r"[A-Za-z0-9_.:-]+", re.ASCII)
#: `<ref> + <s>` / `<ref> - <s>` (the runtime's `vE`): the number is digits with one optional
#: fraction at the very end.
_REFERENCE_OFFSET = re.compile(r"(?P<ref>.*?)\s*(?P<op>[+-])\s*(?P<mag>(?:\d*\.)?\d+)", re.ASCII)
#: The HTML spec's JavaScript MIME types: any other `type` is a data block that never runs.
_JS_MIME_TYPES = frozenset(
    {"", "module", "application/ecmascript", "application/javascript", "application/x-ecmascript",
     "application/x-javascript", "text/ecmascript", "text/javascript", "text/javascript1.0",
     "text/javascript1.1", "text/javascript1.2", "text/javascript1.3", "text/javascript1.4",
     "text/javascript1.5", "text/jscript", "text/livescript", "text/x-ecmascript",
     "text/x-javascript"}
)  # fmt: skip
#: The lint rule's CSS animation test (`root_composition_missing_duration_source`).
_CSS_ANIMATION = re.compile(r"\banimation(?:-name)?\s*:")
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_IMPORT = re.compile(r"@import\b", re.IGNORECASE)
_GIF_SRC = re.compile(r"\.gif(?:[?#]|$)", re.IGNORECASE)
_ADD_DURATION_HINT = (
    'add data-duration="<seconds>" to the root composition element to state the length'
)


def _strict_number(value: str | None) -> float | None:
    """`parseStrictFiniteTimingNumber` / `parseNumeric`: `Number(value)` when finite; None
    for an absent or blank value."""
    if value is None or not _js_trim(value):
        return None
    number = _js_number(value)
    return number if math.isfinite(number) else None


def _non_negative(value: str | None) -> float | None:
    number = _strict_number(value)
    return number if number is not None and number >= 0 else None


class _RuntimeOnly(Exception):
    """A value the browser knows and a static reading cannot (a media file's length)."""


class _Reference:
    __slots__ = ("offset", "ref")

    def __init__(self, ref: str, offset: float) -> None:
        self.ref = ref
        self.offset = offset


def _parse_start(raw: str | None) -> float | _Reference | None:
    """The runtime's `Ho`: an absolute number, a reference (`intro`, `intro + 1.5`), or None."""
    text = _js_trim(raw or "")
    if not text:
        return None
    number = _strict_number(text)
    if number is not None:
        return number
    if _REFERENCE_TOKEN.fullmatch(text):
        return _Reference(text, 0.0)
    match = _REFERENCE_OFFSET.fullmatch(text)
    if match is None:
        return None
    ref = _js_trim(match.group("ref"))
    if not _REFERENCE_TOKEN.fullmatch(ref):
        return None
    magnitude = float(match.group("mag"))
    return _Reference(ref, -magnitude if match.group("op") == "-" else magnitude)


def _is_host(element: _Element) -> bool:
    """A sub-composition host (`p` in the runtime's start resolver)."""
    return any(
        element.has(name)
        for name in ("data-composition-src", "data-composition-id", "data-composition-file")
    )


class _Timing:
    """Port of `createRuntimeStartTimeResolver({includeAuthoredTimingAttrs: true})` for a
    document without timelines: clip starts (absolute, host-relative, or referencing another
    clip) and clip lengths from the timing attributes."""

    def __init__(self, elements: list[_Element]) -> None:
        self._by_id: dict[str, _Element] = {}
        self._by_composition_id: dict[str, _Element] = {}
        for element in elements:
            if "id" in element.attrs:
                self._by_id.setdefault(element.attrs["id"], element)
            if "data-composition-id" in element.attrs:
                self._by_composition_id.setdefault(element.attrs["data-composition-id"], element)
        self._starts: dict[int, float] = {}
        self._durations: dict[int, float | None] = {}
        self._visiting: set[int] = set()

    def _lookup(self, ref: str) -> _Element | None:
        return self._by_id.get(ref) or self._by_composition_id.get(ref)

    @staticmethod
    def _playback_offset(element: _Element) -> float:
        """`fl`: a trimmed host's `data-playback-start` (or `data-media-start`)."""
        value = _non_negative(element.get("data-playback-start"))
        if value is None:
            value = _non_negative(element.get("data-media-start"))
        return value or 0.0

    @staticmethod
    def _auto_start_host(element: _Element) -> _Element | None:
        """`b`: a sub-composition without its own start starts with its host."""
        parent = element.parent
        if parent is None or not element.has("data-composition-id"):
            return None
        if _parse_start(element.get("data-start")) is not None:
            return None
        return parent if _is_host(parent) else None

    def _host_relative(self, element: _Element, fallback: float) -> float:
        """`x`: a host's start on the root timeline, less its trim."""
        trim_from = self._auto_start_host(element) or element
        return self.start(element, fallback) - self._playback_offset(trim_from)

    def host_start(self, element: _Element, fallback: float = 0.0) -> float:
        """`y`: where the composition holding `element` starts."""
        if element.has("data-composition-id"):
            host = element.parent.closest_composition() if element.parent else None
        else:
            host = element.closest_composition()
        return self._host_relative(host, fallback) if host is not None else 0.0

    def _resolve_start(self, element: _Element, fallback: float) -> float:
        parsed = _parse_start(element.get("data-start"))
        if parsed is None:
            host = self._auto_start_host(element)
            return self.start(host, fallback) if host is not None else fallback
        if not isinstance(parsed, _Reference):
            return self.host_start(element, fallback) + max(0.0, parsed)
        target = self._lookup(parsed.ref)
        if target is None:
            return fallback
        begins = self.start(target, 0.0)
        length = self.duration(target) or 0.0
        floor = min(0.0, self.host_start(element, 0.0))
        return max(floor, begins + length + parsed.offset)

    def start(self, element: _Element, fallback: float = 0.0) -> float:
        """`resolveStartForElement` (memoised; a reference cycle yields the fallback)."""
        key = id(element)
        if key in self._starts:
            return self._starts[key]
        if key in self._visiting:
            return fallback
        self._visiting.add(key)
        try:
            value = self._resolve_start(element, fallback)
        finally:
            self._visiting.discard(key)
        self._starts[key] = value
        return value

    def authored_duration(self, element: _Element) -> float | None:
        """`c`: `data-duration`, else `data-end` after the clip's start (or the runtime's own
        `data-hf-authored-*` stamps)."""
        for name in ("data-duration", "data-hf-authored-duration"):
            value = _strict_number(element.get(name))
            if value is not None and value > 0:
                return value
        start = self.start(element, 0.0)
        if not math.isfinite(start):
            return None
        start = max(0.0, start)
        for name in ("data-end", "data-hf-authored-end"):
            end = _strict_number(element.get(name))
            if end is not None and end > start:
                return end - start
        return None

    def duration(self, element: _Element) -> float | None:
        """`resolveDurationForElement` (`f`), with no timelines registered."""
        key = id(element)
        if key in self._durations:
            return self._durations[key]
        value = self.authored_duration(element)
        if value is None and element.tag in _MEDIA_TAGS:
            raise _RuntimeOnly(f"{element.describe()} has no data-duration, so its length is the "
                               "media file's")  # fmt: skip
        if (
            value is None
            and element.tag == "img"
            and (element.has("data-start") or element.has("data-track-index"))
        ):
            value = self._image_duration(element)
        self._durations[key] = value
        return value

    @staticmethod
    def _image_duration(element: _Element) -> float:
        """`ir`: an image clip's authored length, else the 3 s default."""
        value = _strict_number(element.get("data-duration"))
        if value is None or value <= 0:
            end = _strict_number(element.get("data-end"))
            value = end  # the runtime subtracts a start of 0 here
        return value if value is not None and value > 0 else _DEFAULT_IMAGE_SECONDS

    def media_start(self, element: _Element) -> float:
        """`resolveMediaStartForElement`: a timed media element in a started host."""
        host = element.closest_composition()
        host_start = self._host_relative(host, 0.0) if host is not None else 0.0
        authored = _strict_number(element.get("data-start"))
        if not element.has("data-hf-auto-start") and authored is not None and host_start != 0:
            basis = _js_trim(element.get("data-hf-media-start-basis") or "").lower()
            return authored if basis == "global" else host_start + authored
        return self.start(element, host_start)


def _latest_end(ends: list[float | None]) -> float | None:
    """`resolveCompositionDuration` without an authored length: the latest positive end."""
    known = [end for end in ends if end is not None and math.isfinite(end) and end > 0]
    return max(known) if known else None


def _runtime_sources(doc: _DocumentParser, live: list[_Element]) -> list[str]:
    """What could set the length in the browser only: scripts, CSS animations, unread files."""
    found: list[str] = []
    for element in live:
        handlers = sorted(name for name in element.attrs if name.startswith("on"))
        if handlers:
            found.append(f"{element.describe()} runs script ({handlers[0]})")
        if element.tag == "script":
            kind = _js_trim((element.get("type") or "").split(";")[0]).lower()
            if kind in _JS_MIME_TYPES and (element.has("src") or _js_trim(element.text)):
                found.append(f"a {element.describe()} may register a GSAP timeline or animate")
        elif element.tag == "style":
            css = _CSS_COMMENT.sub("", element.text)
            if _CSS_ANIMATION.search(css):
                found.append("a <style> declares a CSS animation")
            if _CSS_IMPORT.search(css):
                found.append("a <style> @imports a stylesheet that may animate")
        elif element.tag == "link" and "stylesheet" in (element.get("rel") or "").lower().split():
            found.append(f"{element.describe()} is a stylesheet that may animate (not read)")
        elif element.tag == "img" and _GIF_SRC.search(element.get("src") or ""):
            found.append(
                f"{element.describe()}: an animated GIF becomes a video clip when rendered"
            )
        style = _CSS_COMMENT.sub("", element.get("style") or "")
        if _CSS_ANIMATION.search(style):
            found.append(f"{element.describe()} has a CSS animation")
        if element.has("data-lottie-src"):
            found.append(f"{element.describe()} is a Lottie animation")
        for name in ("data-composition-src", "data-composition-file"):
            if element.has(name):
                found.append(f"the sub-composition {element.get(name)!r} is loaded when rendered")
        if element.tag in _MEDIA_TAGS and element.has("data-start"):
            length = _strict_number(element.get("data-duration"))
            if length is None or length <= 0:
                found.append(
                    f"{element.describe()} has no data-duration, so its length is the media file's"
                )
    for element in doc.elements:
        in_template = element.inert and any(node.tag == "template" for node in _ancestors(element))
        if in_template and (
            element.tag == "script"
            or element.has("data-start")
            or element.has("data-composition-id")
        ):
            found.append("a <template> holds clips or scripts that are mounted when rendered")
            break
    return found


def _ancestors(element: _Element) -> list[_Element]:
    out: list[_Element] = []
    node = element.parent
    while node is not None:
        out.append(node)
        node = node.parent
    return out


def _unknown(reasons: list[str]) -> tuple[None, None, str]:
    shown = "; ".join(reasons[:3])
    more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return None, None, f"{shown}{more}; {_ADD_DURATION_HINT}"


def _static_duration(
    doc: _DocumentParser,
) -> tuple[float | None, DurationSource | None, str | None]:
    """`(seconds, source, unknown_reason)` for the length HyperFrames 0.8.170 would render."""
    live = [e for e in doc.elements if not e.inert]
    compositions = [e for e in live if e.has("data-composition-id")]
    if not compositions:
        return (
            None,
            None,
            f"index.html has no element with data-composition-id; {_ADD_DURATION_HINT}",
        )

    # 1. The compile stage's static duration (first composition element in document order).
    first = compositions[0]
    declared = _strict_number(first.get("data-duration"))
    source: DurationSource = "data-duration"
    if declared is None:
        declared = _strict_number(first.get("data-composition-duration"))
        source = "data-composition-duration"
    if declared is not None and declared > 0:
        return declared, source, None

    # 2. The runtime: its root prefers data-root="true".
    root = next((e for e in compositions if e.get("data-root") == "true"), first)
    root_declared = _strict_number(root.get("data-duration"))
    if root_declared is not None and root_declared > 0:
        return root_declared, "data-duration", None

    found = _runtime_sources(doc, live)
    if found:
        return _unknown([f"the root composition declares no data-duration and {found[0]}",
                         *found[1:]])  # fmt: skip

    timing = _Timing(live)
    in_root = root.descendants()
    try:
        # Floors: timed media anywhere, timed sub-compositions directly under the root.
        media_ends: list[float | None] = []
        for element in live:
            if element.tag in _MEDIA_TAGS and element.has("data-start"):
                begins = timing.media_start(element)
                length = _strict_number(element.get("data-duration"))
                if math.isfinite(begins) and length is not None and length > _MIN_VALID_SECONDS:
                    media_ends.append(max(0.0, begins) + length)
        host_ends: list[float | None] = [root_declared]
        for element in in_root:
            if not (element.has("data-composition-id") and element.has("data-start")):
                continue
            parent = element.parent.closest_composition() if element.parent else None
            if parent is not root:
                continue
            begins = timing.start(element, 0.0)
            length = timing.duration(element)
            if math.isfinite(begins) and length is not None and length > 0:
                host_ends.append(max(0.0, begins) + length)
        floors = [
            end
            for end in (_latest_end(media_ends), _latest_end(host_ends))
            if end is not None and end > _MIN_VALID_SECONDS
        ]
        if floors:
            return max(floors), "clips", None

        # No floor: the latest end among the root's clips.
        ends: list[float] = []
        pending: list[str] = []
        for element in in_root:
            if not element.has("data-start"):
                continue
            begins = timing.start(element, 0.0)
            if not math.isfinite(begins):
                continue
            length = timing.duration(element)
            if length is not None:
                ends.append(max(0.0, begins) + length)
            elif element.tag in _MEDIA_TAGS or _is_host(element):
                pending.append(
                    f"the sub-composition {element.describe()} has no data-duration, so its "
                    "length comes from its own timeline"
                )
    except _RuntimeOnly as exc:
        return _unknown([f"the root composition declares no data-duration and {exc}"])
    if pending:
        return _unknown([f"the root composition declares no data-duration and {pending[0]}",
                         *pending[1:]])  # fmt: skip
    latest = _latest_end(list(ends))
    if latest is None:
        return _unknown(
            ["the root composition declares no data-duration and has no clip with a length "
             "(data-start with data-duration or data-end); HyperFrames would fail with "
             '"Composition has zero duration"']
        )  # fmt: skip
    return latest, "clips", None


def composition_from_html(html: str | bytes) -> Composition:
    """Parse an `index.html` (text, or bytes decoded as UTF-8 with an optional BOM, invalid
    bytes replaced) into what the client can know before rendering it. The one parser behind
    `read_composition` and `deployed_site.read_composition_from_tarball`."""
    text = html.decode("utf-8-sig", errors="replace") if isinstance(html, bytes) else html
    doc = _parse(text.removeprefix("\ufeff"))

    html_attrs = doc.html.attrs
    root, root_is_html = _root_attrs(doc)
    root = root or {}

    variables = parse_variable_declarations(html_attrs.get("data-composition-variables"))
    if not root_is_html:
        # The 0.8.170 CLI (`extractCompositionMetadata`) also reads declarations on the root
        # composition element; the runtime merges both, later declarers winning.
        variables = _merge_declarations(
            variables, parse_variable_declarations(root.get("data-composition-variables"))
        )

    duration, source, unknown_reason = _static_duration(doc)
    return Composition(
        composition_id=html_attrs.get("data-composition-id"),
        variables=variables,
        duration_s=duration,
        duration_source=source,
        duration_unknown_reason=unknown_reason,
        width=_positive_int(root.get("data-width")),
        height=_positive_int(root.get("data-height")),
        fps=_distributed_fps(root.get("data-fps")),
    )


def read_composition(project_dir: str | Path) -> Composition:
    """Read `<project_dir>/index.html`. An unreadable or missing file gives an empty
    `Composition` (the CLI treats it as an empty schema, i.e. no variable validation) whose
    duration is unknown."""
    path = Path(project_dir) / "index.html"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = f"cannot read {path} ({exc.strerror or type(exc).__name__})"
        return Composition(duration_unknown_reason=reason)
    return composition_from_html(raw)


def _js_round(value: float) -> int:
    """`Math.round`: halves go towards +infinity (Python's `round` goes to even)."""
    floor = math.floor(value)
    return floor + 1 if value - floor >= 0.5 else floor


def frame_count(duration_s: float, fps: int) -> int:
    """Frames the producer renders for a duration (`durationToFrameCount`): the nearest whole
    frame when within 1e-3 of it, so float noise never adds a frame, else rounded up."""
    raw = duration_s * fps
    nearest = _js_round(raw)
    return nearest if abs(raw - nearest) <= _FRAME_BOUNDARY_EPSILON else math.ceil(raw)
