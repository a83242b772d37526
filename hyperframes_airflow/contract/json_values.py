"""Checks on a row's parsed `variables` that JSON parsing alone does not make.

- **Depth.** Later stages (JSON encoding, schema checks) walk values recursively and would raise
  `RecursionError` a few hundred levels down; no template needs more than a few levels.
- **Integers beyond 2^53 - 1.** Python keeps `12345678901234567890` exact, but Node's
  `JSON.parse` rounds it, so the value we send would differ from the one the Node CLI sends.
- **Lone surrogates** (`"\\ud800"`): not text; they cannot be encoded as UTF-8.

One iterative walk (depth is user-controlled) does all three. The common row, a flat object of
strings and small numbers, costs one loop over its values and allocates nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from hyperframes_airflow.contract._js import MAX_SAFE_INTEGER

__all__ = ["MAX_VARIABLES_DEPTH", "VariablesScan", "has_lone_surrogate", "scan_variables"]

#: Levels of objects and arrays a row's `variables` may nest; the `variables` object itself is
#: level 1, so `{"a": {"b": [1]}}` is 3 levels deep.
MAX_VARIABLES_DEPTH: Final = 64

_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_MAX_SHOWN_KEY: Final = 40

# A path is kept as a chain of (parent, key) pairs and turned into text only for a message.
_Path = tuple[Any, str | int] | None


@dataclass(slots=True)
class VariablesScan:
    """What is wrong with a `variables` object; paths look like `variables.customer.id`."""

    too_deep_under: str | None = None
    big_integers: list[str] = field(default_factory=list)
    lone_surrogate: bool = False


def has_lone_surrogate(text: str) -> bool:
    return _SURROGATE_RE.search(text) is not None


def scan_variables(variables: dict[str, Any], *, check_strings: bool) -> VariablesScan | None:
    """Scan `variables` (depth, unsafe integers and, when `check_strings`, lone surrogates in
    strings and keys); None when nothing is wrong."""
    scan: VariablesScan | None = None
    nested: list[tuple[Any, int, _Path]] = []
    for key, value in variables.items():  # the fast path: most rows end here
        kind = type(value)
        if kind is str:
            if check_strings and _SURROGATE_RE.search(value):
                scan = scan or VariablesScan()
                scan.lone_surrogate = True
            continue
        if kind is int:
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                scan = scan or VariablesScan()
                scan.big_integers.append(_path_text((None, key)))
        elif kind is dict or kind is list:
            nested.append((value, 2, (None, key)))
    if check_strings and any(_SURROGATE_RE.search(key) for key in variables):
        scan = scan or VariablesScan()
        scan.lone_surrogate = True
    if nested:
        nested.reverse()  # popped from the end: the first container is walked first
        scan = _scan_nested(nested, check_strings, scan or VariablesScan())
    if scan and not (scan.too_deep_under or scan.big_integers or scan.lone_surrogate):
        return None
    return scan


def _scan_nested(
    stack: list[tuple[Any, int, _Path]], check_strings: bool, scan: VariablesScan
) -> VariablesScan:
    """Depth-first over the nested containers in document order, never past the depth limit."""
    while stack:
        container, depth, path = stack.pop()
        if depth > MAX_VARIABLES_DEPTH:
            scan.too_deep_under = scan.too_deep_under or _path_text(_top_level(path))
            continue
        items = container.items() if type(container) is dict else enumerate(container)
        children = len(stack)
        for key, value in items:
            kind = type(value)
            if kind is str:
                if check_strings and _SURROGATE_RE.search(value):
                    scan.lone_surrogate = True
            elif kind is int:
                if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                    scan.big_integers.append(_path_text((path, key)))
            elif kind is dict or kind is list:
                stack.append((value, depth + 1, (path, key)))
            if check_strings and type(key) is str and _SURROGATE_RE.search(key):
                scan.lone_surrogate = True
        stack[children:] = reversed(stack[children:])
    return scan


def _top_level(path: _Path) -> _Path:
    """The path of the top-level variable that `path` lies under."""
    while path is not None and path[0] is not None:
        path = path[0]
    return path


def _path_text(path: _Path) -> str:
    """`variables.a[0]["first name"]`: keys are names, not values, so they may be shown."""
    keys: list[str | int] = []
    while path is not None:
        path, key = path
        keys.append(key)
    text = "variables"
    for key in reversed(keys):
        if isinstance(key, int):
            text += f"[{key}]"
        elif _IDENTIFIER_RE.fullmatch(key) and len(key) <= _MAX_SHOWN_KEY:
            text += f".{key}"
        else:
            shown = key if len(key) <= _MAX_SHOWN_KEY else key[:_MAX_SHOWN_KEY] + "…"
            text += f"[{json.dumps(shown, ensure_ascii=True)}]"
    return text
