"""Check a row's variables against a composition's declared schema (`validateVariables`).

Same rules and message texts as the Node CLI, so a batch that passes here passes there. Batch
variables are personal data: `VariableIssue.message` is the Node text (an out-of-range enum
value is quoted in it), while `safe_message` never contains a value and is what logs and
manifests must use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hyperframes_airflow.contract._js import UNDEFINED, js_string, js_type_of
from hyperframes_airflow.contract.composition import VariableDeclaration

__all__ = ["VariableIssue", "VariableIssueKind", "js_type_of", "validate_variables"]

VariableIssueKind = Literal["undeclared", "type-mismatch", "enum-out-of-range"]


class VariableIssue(BaseModel):
    """One variable problem. `actual` is a JS type name for type mismatches, but the value itself
    for `enum-out-of-range`: it is kept out of `repr()`/`str()`; use `safe_message` anywhere it
    could be persisted."""

    model_config = ConfigDict(frozen=True)

    kind: VariableIssueKind
    variable_id: str
    expected: str | None = None
    actual: str | None = Field(default=None, repr=False)
    allowed: list[str] | None = None

    @property
    def message(self) -> str:
        """The exact `formatVariableValidationIssue` text (may contain the value)."""
        if self.kind == "enum-out-of-range":
            return f'{self._enum_prefix()} (got "{self.actual}").'
        return self.safe_message

    @property
    def safe_message(self) -> str:
        """The message without any variable value: safe for logs and manifests."""
        if self.kind == "undeclared":
            return f'Variable "{self.variable_id}" is not declared in data-composition-variables.'
        if self.kind == "type-mismatch":
            return f'Variable "{self.variable_id}" expected {self.expected}, got {self.actual}.'
        return f"{self._enum_prefix()}."

    def _enum_prefix(self) -> str:
        allowed = ", ".join(f'"{value}"' for value in self.allowed or [])
        return f'Variable "{self.variable_id}" must be one of {allowed}'

    def __str__(self) -> str:
        return self.safe_message


def _is_finite_number(value: Any) -> bool:
    """A JS finite number: bool is its own type in JS; ints too big for a double are Infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _option_value(option: Any) -> Any:
    """`option.value` as JS reads it: undefined for non-objects or a missing key."""
    if isinstance(option, Mapping) and "value" in option:
        return option["value"]
    return UNDEFINED


def _mismatch(declaration: VariableDeclaration, expected: str, actual: str) -> VariableIssue:
    return VariableIssue(
        kind="type-mismatch", variable_id=declaration.id, expected=expected, actual=actual
    )


def _check_type(value: Any, declaration: VariableDeclaration) -> VariableIssue | None:
    """Port of `checkType` for one declared variable."""
    kind = declaration.type
    if kind in ("string", "color"):
        return None if isinstance(value, str) else _mismatch(declaration, kind, js_type_of(value))
    if kind == "number":
        if _is_finite_number(value):
            return None
        return _mismatch(declaration, "number", js_type_of(value))
    if kind == "boolean":
        if isinstance(value, bool):
            return None
        return _mismatch(declaration, "boolean", js_type_of(value))
    if kind == "enum":
        if not isinstance(value, str):
            return _mismatch(declaration, "enum (string)", js_type_of(value))
        options = [_option_value(option) for option in declaration.options or []]
        if any(isinstance(option, str) and option == value for option in options):
            return None
        return VariableIssue(
            kind="enum-out-of-range",
            variable_id=declaration.id,
            allowed=[js_string(option) for option in options],
            actual=value,
        )
    if kind == "font":
        if isinstance(value, str):
            return None
        if not isinstance(value, Mapping):
            return _mismatch(
                declaration, "font (object {name, source} or string)", js_type_of(value)
            )
        if not isinstance(value.get("name"), str) or not isinstance(value.get("source"), str):
            return _mismatch(
                declaration,
                "font object {name: string, source: string}",
                "object missing string name/source",
            )
        return None
    # image
    if isinstance(value, str):
        return None
    if not isinstance(value, Mapping):
        return _mismatch(declaration, "image (object {url} or string)", js_type_of(value))
    if not isinstance(value.get("url"), str):
        return _mismatch(declaration, "image object {url: string}", "object missing string url")
    return None


def validate_variables(
    values: Mapping[str, Any], declarations: Sequence[VariableDeclaration]
) -> list[VariableIssue]:
    """Issues for `values` in insertion order. An empty schema yields none: the CLI validates
    nothing (not even undeclared keys) when the composition declares no variables."""
    if not declarations:
        return []
    by_id = {declaration.id: declaration for declaration in declarations}  # later id wins
    issues: list[VariableIssue] = []
    for variable_id, value in values.items():
        declaration = by_id.get(variable_id)
        if declaration is None:
            issues.append(VariableIssue(kind="undeclared", variable_id=variable_id))
            continue
        issue = _check_type(value, declaration)
        if issue is not None:
            issues.append(issue)
    return issues
