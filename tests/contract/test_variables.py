"""validate_variables: Node rules and texts, and messages safe for logs."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from hyperframes_airflow.contract.composition import (
    VariableDeclaration,
    parse_variable_declarations,
)
from hyperframes_airflow.contract.variables import VariableIssue, js_type_of, validate_variables

SCHEMA = parse_variable_declarations(
    json.dumps(
        [
            {"id": "title", "type": "string", "label": "T", "default": ""},
            {"id": "accent", "type": "color", "label": "A", "default": "#fff"},
            {"id": "count", "type": "number", "label": "N", "default": 1},
            {"id": "dark", "type": "boolean", "label": "D", "default": False},
            {
                "id": "tone",
                "type": "enum",
                "label": "Tone",
                "default": "calm",
                "options": [{"value": "calm", "label": "Calm"}, {"value": "loud", "label": "Loud"}],
            },
            {"id": "font", "type": "font", "label": "F", "default": "Inter"},
            {"id": "logo", "type": "image", "label": "L", "default": "https://x/l.png"},
        ]
    )
)


def _one(variable_id: str, value: Any) -> VariableIssue | None:
    issues = validate_variables({variable_id: value}, SCHEMA)
    assert len(issues) <= 1
    return issues[0] if issues else None


@pytest.mark.parametrize(
    ("variable_id", "value"),
    [
        ("title", "Hi"),
        ("title", ""),
        ("accent", "#000"),
        ("count", 0),
        ("count", -2.5),
        ("dark", True),
        ("dark", False),
        ("tone", "loud"),
        ("font", "Roboto"),
        ("font", {"name": "Roboto", "source": "https://fonts/x.css", "extra": 1}),
        ("logo", "https://x/y.png"),
        ("logo", {"url": "https://x/y.png"}),
    ],
)
def test_accepted_values(variable_id: str, value: Any) -> None:
    assert _one(variable_id, value) is None


TYPE_MISMATCHES: list[tuple[str, Any, str, str]] = [
    ("title", 1, "string", "number"),
    ("title", None, "string", "null"),
    ("title", ["a"], "string", "array"),
    ("title", {"a": 1}, "string", "object"),
    ("title", True, "string", "boolean"),
    ("accent", 0xFFFFFF, "color", "number"),
    ("count", "3", "number", "string"),
    ("count", True, "number", "boolean"),
    ("count", math.nan, "number", "number"),
    ("count", math.inf, "number", "number"),
    ("count", 10**400, "number", "number"),
    ("dark", 1, "boolean", "number"),
    ("dark", "true", "boolean", "string"),
    ("tone", 1, "enum (string)", "number"),
    ("tone", None, "enum (string)", "null"),
    ("font", 12, "font (object {name, source} or string)", "number"),
    ("font", ["Inter"], "font (object {name, source} or string)", "array"),
    ("font", None, "font (object {name, source} or string)", "null"),
    (
        "font",
        {"name": "Inter"},
        "font object {name: string, source: string}",
        "object missing string name/source",
    ),
    (
        "font",
        {"name": 1, "source": "x"},
        "font object {name: string, source: string}",
        "object missing string name/source",
    ),
    ("logo", 3, "image (object {url} or string)", "number"),
    ("logo", [], "image (object {url} or string)", "array"),
    ("logo", {"href": "x"}, "image object {url: string}", "object missing string url"),
]


@pytest.mark.parametrize(("variable_id", "value", "expected", "actual"), TYPE_MISMATCHES)
def test_type_mismatch(variable_id: str, value: Any, expected: str, actual: str) -> None:
    issue = _one(variable_id, value)
    assert issue == VariableIssue(
        kind="type-mismatch", variable_id=variable_id, expected=expected, actual=actual
    )
    text = f'Variable "{variable_id}" expected {expected}, got {actual}.'
    assert issue.message == text
    assert issue.safe_message == text


def test_enum_out_of_range_message_and_safe_message() -> None:
    issue = _one("tone", "Jane Doe's secret")
    assert issue is not None
    assert issue.kind == "enum-out-of-range"
    assert issue.allowed == ["calm", "loud"]
    assert issue.actual == "Jane Doe's secret"
    assert issue.message == (
        'Variable "tone" must be one of "calm", "loud" (got "Jane Doe\'s secret").'
    )
    assert issue.safe_message == 'Variable "tone" must be one of "calm", "loud".'
    # Accidental logging must not leak the value either.
    assert "secret" not in str(issue)
    assert "secret" not in repr(issue)


def test_enum_is_case_sensitive() -> None:
    issue = _one("tone", "Calm")
    assert issue is not None and issue.kind == "enum-out-of-range"


def test_enum_options_are_read_like_js() -> None:
    (decl,) = parse_variable_declarations(
        json.dumps(
            [
                {
                    "id": "e",
                    "type": "enum",
                    "label": "E",
                    "default": "a",
                    "options": [{"value": "a"}, {"label": "no value"}, "b", {"value": 1}],
                }
            ]
        )
    )
    assert validate_variables({"e": "a"}, [decl]) == []
    (issue,) = validate_variables({"e": "b"}, [decl])  # a bare string option has no .value
    assert issue.allowed == ["a", "undefined", "undefined", "1"]
    assert issue.safe_message == 'Variable "e" must be one of "a", "undefined", "undefined", "1".'
    (issue,) = validate_variables({"e": "1"}, [decl])  # strict equality: "1" is not 1
    assert issue.kind == "enum-out-of-range"


def test_undeclared_variable() -> None:
    (issue,) = validate_variables({"subtitle": "x"}, SCHEMA)
    assert issue == VariableIssue(kind="undeclared", variable_id="subtitle")
    text = 'Variable "subtitle" is not declared in data-composition-variables.'
    assert issue.message == text and issue.safe_message == text


def test_empty_schema_reports_nothing() -> None:
    assert validate_variables({"anything": object(), "x": None}, []) == []


def test_issues_follow_value_insertion_order() -> None:
    issues = validate_variables(
        {"dark": "no", "zzz": 1, "title": "ok", "count": "1", "tone": "x"}, SCHEMA
    )
    assert [(i.kind, i.variable_id) for i in issues] == [
        ("type-mismatch", "dark"),
        ("undeclared", "zzz"),
        ("type-mismatch", "count"),
        ("enum-out-of-range", "tone"),
    ]


def test_a_later_duplicate_declaration_wins() -> None:
    decls = parse_variable_declarations(
        json.dumps(
            [
                {"id": "x", "type": "string", "label": "X", "default": ""},
                {"id": "x", "type": "number", "label": "X", "default": 0},
            ]
        )
    )
    (issue,) = validate_variables({"x": "text"}, decls)
    assert issue.expected == "number"


def test_accepts_any_sequence_of_declarations() -> None:
    declarations: tuple[VariableDeclaration, ...] = tuple(SCHEMA)
    assert validate_variables({"title": "x"}, declarations) == []


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (0, "number"),
        (1.5, "number"),
        ("", "string"),
        ([], "array"),
        ((), "array"),
        ({}, "object"),
    ],
)
def test_js_type_of(value: Any, name: str) -> None:
    assert js_type_of(value) == name


def test_issue_is_frozen_and_serialisable_without_the_value() -> None:
    issue = _one("tone", "private")
    assert issue is not None
    with pytest.raises(Exception, match="frozen"):
        issue.variable_id = "x"
    dumped = issue.model_dump(exclude={"actual"})
    assert "private" not in json.dumps(dumped)
