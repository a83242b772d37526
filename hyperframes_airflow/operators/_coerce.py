"""Templated values arrive as strings ("True", "640") unless the DAG renders native objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "", "none"}


def as_bool(value: Any, *, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean; got {value!r}")


def as_optional_float(value: Any, *, name: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None


def as_config_dict(value: Any) -> dict[str, Any]:
    """Accept a RenderConfig, a dict, or a templated dict whose numbers came back as strings."""
    if hasattr(value, "model_dump"):
        dumped: dict[str, Any] = value.model_dump(by_alias=True, exclude_none=True)
        return dumped
    if not isinstance(value, Mapping):
        raise ValueError(f"config must be a RenderConfig or a mapping; got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None or (isinstance(item, str) and item.strip() == ""):
            continue
        if isinstance(item, str) and item.strip().lstrip("-").isdigit():
            out[key] = int(item)
        else:
            out[key] = item
    return out
