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
    "VariableDeclaration",
    "VariableType",
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


class Composition(BaseModel):
    """What the client can know about a project before rendering it."""

    model_config = ConfigDict(frozen=True)

    composition_id: str | None = None
    variables: list[VariableDeclaration] = []
    duration_s: float | None = None
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


def _positive_duration(value: str | None) -> float | None:
    """A duration in seconds, or None when absent, not finite or not positive (JS treats a
    parsed 0 as "no duration"; a negative one cannot be rendered either)."""
    if not value:
        return None
    seconds = _js_parse_float(value)
    return seconds if math.isfinite(seconds) and seconds > 0 else None


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


class _CompositionScanner(HTMLParser):
    """Collect the `<html>` attributes and the root composition element's attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html_attrs: dict[str, str] = {}
        self.first_root_marked: dict[str, str] | None = None
        self.first_composition: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        amap: dict[str, str] = {}
        for name, value in attrs:
            amap.setdefault(name, "" if value is None else value)  # browsers keep the first
        if tag == "html":
            # A stray later <html> tag only adds attributes the document element lacks.
            for name, value in amap.items():
                self.html_attrs.setdefault(name, value)
            return
        if "data-composition-id" not in amap:
            return
        if self.first_composition is None:
            self.first_composition = amap
        if self.first_root_marked is None and amap.get("data-root") == "true":
            self.first_root_marked = amap


def _root_attrs(scanner: _CompositionScanner) -> tuple[dict[str, str] | None, bool]:
    """The root composition's attributes and whether the root is `<html>` itself: an element
    marked `data-root="true"` first (as the CLI's fps lookup), else the first element with
    `data-composition-id`, else `<html>` when it carries the id."""
    html_is_marked_root = (
        "data-composition-id" in scanner.html_attrs
        and scanner.html_attrs.get("data-root") == "true"
    )
    if html_is_marked_root:
        return scanner.html_attrs, True
    root = scanner.first_root_marked or scanner.first_composition
    if root is not None:
        return root, False
    if "data-composition-id" in scanner.html_attrs:
        return scanner.html_attrs, True
    return None, False


def read_composition(project_dir: str | Path) -> Composition:
    """Read `<project_dir>/index.html`. An unreadable or missing file gives an empty
    `Composition` (the CLI treats it as an empty schema, i.e. no variable validation)."""
    try:
        raw = (Path(project_dir) / "index.html").read_bytes()
    except OSError:
        return Composition()
    scanner = _CompositionScanner()
    scanner.feed(raw.decode("utf-8-sig", errors="replace"))
    scanner.close()

    html = scanner.html_attrs
    root, root_is_html = _root_attrs(scanner)
    root = root or {}

    variables = parse_variable_declarations(html.get("data-composition-variables"))
    if not root_is_html:
        # The 0.8.170 CLI (`extractCompositionMetadata`) also reads declarations on the root
        # composition element; the runtime merges both, later declarers winning.
        variables = _merge_declarations(
            variables, parse_variable_declarations(root.get("data-composition-variables"))
        )

    duration = _positive_duration(html.get("data-composition-duration"))
    if duration is None:
        duration = _positive_duration(root.get("data-duration"))

    return Composition(
        composition_id=html.get("data-composition-id"),
        variables=variables,
        duration_s=duration,
        width=_positive_int(root.get("data-width")),
        height=_positive_int(root.get("data-height")),
        fps=_distributed_fps(root.get("data-fps")),
    )


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
