"""Operator arguments as they arrive from templates: blank never means off.

Templated DAG arguments reach an operator as strings: `"True"`, `"640"`, `""` (an empty param)
or `"None"` (a `None` param rendered by Jinja). Reading a blank as False or as "no limit" turns a
check off when a template goes wrong, so here a blank means the argument's *default* (a check
stays on), a blank cost limit is an error (the gate fails closed), and anything unreadable is an
error naming the argument. Pure functions, no Airflow import.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from hyperframes_airflow.contract.config import RenderConfig

__all__ = ["parse_bool", "parse_config_mapping", "parse_cost_limit"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
#: What a template renders for an unset value: empty, whitespace, or Python/JSON's None.
_BLANK = frozenset({"", "none", "null"})
_DECIMAL = re.compile(r"\+?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)


def _is_blank(text: str) -> bool:
    return text.strip().lower() in _BLANK


def parse_bool(value: Any, *, name: str, default: bool) -> bool:
    """A boolean argument: a bool; 1/0; or, case-insensitive and stripped, "true"/"1"/"yes"/"on"
    or "false"/"0"/"no"/"off". None, "", whitespace, "none" and "null" give `default` (so a
    check that defaults on stays on). Anything else raises ValueError naming `name` and the
    value."""
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _BLANK:
            return default
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(
        f"{name} must be a boolean: true/false, yes/no, on/off or 1/0 (blank or none means the "
        f"default, {str(default).lower()}); got {value!r}"
    )


def parse_cost_limit(value: Any, *, name: str = "max_cost_usd") -> float | None:
    """A cost limit in USD. Python None means no limit (no gate), as
    `render_batch(max_cost_usd=None)` documents. A number, or a string holding a plain decimal
    number, gives a float that must be finite and >= 0 (0 asks for approval of any cost).

    A string that is blank, "none" or "null" is a ValueError, not "no limit": it is what a
    template renders when its param is unset, and a gate must not open because a template went
    wrong. Leave the argument out (None) to render without a limit.
    """
    if value is None:
        return None
    invalid = f"{name} must be a finite number of US dollars >= 0; got {value!r}"
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _BLANK:
            raise ValueError(
                f"{name} rendered to {value!r} (a blank or None template); give a number, or "
                "leave the argument out to render without a cost limit"
            )
        if not _DECIMAL.fullmatch(text):
            raise ValueError(invalid)
        number = float(text)
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(invalid) from None
    else:
        raise ValueError(invalid)
    if not math.isfinite(number) or number < 0:
        raise ValueError(invalid)
    return number


def _field_names(kind: type) -> frozenset[str]:
    """`RenderConfig` fields typed `kind` or `kind | None`, by snake_case and wire name."""
    names: set[str] = set()
    for field_name, field in RenderConfig.model_fields.items():
        annotation = field.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            members = set(typing.get_args(annotation)) - {type(None)}
        else:
            members = {annotation}
        if members == {kind}:
            names.add(field_name)
            names.add(field.serialization_alias or field_name)
    return frozenset(names)


_INT_KEYS = _field_names(int)
_BOOL_KEYS = _field_names(bool)


def parse_config_mapping(value: Any) -> dict[str, Any]:
    """A render config as a plain mapping for `RenderConfig.model_validate`.

    A pydantic model (a `RenderConfig`) is dumped with its wire names, unset fields left out. A
    mapping (snake_case or camelCase keys) is copied with templating undone: entries that are
    None or blank strings are dropped (the field's default applies); integer fields given as
    digit strings ("640", " 30 ", "-2") become ints; boolean fields given as strings go through
    `parse_bool` (a blank, "none" or "null" is dropped; an unreadable one raises ValueError
    naming `config.<key>`). Everything else is passed through for the config's own Node-style
    validation to judge (so "30.0" or "thirty" fails there with the SDK's message).
    """
    if isinstance(value, BaseModel):
        dumped: dict[str, Any] = value.model_dump(by_alias=True, exclude_none=True)
        return dumped
    if isinstance(value, str):
        raise ValueError(
            "config must be a RenderConfig or a mapping; got a str (a templated config renders "
            "to text unless the DAG sets render_template_as_native_obj=True: pass the dict or "
            "a RenderConfig itself)"
        )
    if not isinstance(value, Mapping):
        raise ValueError(f"config must be a RenderConfig or a mapping; got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, str):
            if not item.strip():
                continue
            if key in _INT_KEYS and _INTEGER.fullmatch(item.strip()):
                item = int(item.strip())
            elif key in _BOOL_KEYS:
                if _is_blank(item):
                    continue
                item = parse_bool(item, name=f"config.{key}", default=False)
        out[key] = item
    return out


def optional_text(value: Any) -> str | None:
    """A templated optional argument: its text, or None when it rendered blank (`""`,
    `"None"`, `"null"`). For arguments where unset has one meaning (which of two inputs)."""
    if value is None:
        return None
    text = str(value).strip()
    return None if _is_blank(text) else text
