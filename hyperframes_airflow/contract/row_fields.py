"""Reading the fields of one batch line: its JSON object, `outputKey`, `variables`,
`executionName`, and the fields it should not have.

Each reader appends its problems to the line's issue list and returns the value the row keeps,
so `batch._Checker` can report every problem of a line at once. Messages name the line and the
field, follow the Node CLI's headlines (contract §7.1), and never contain a variable's value.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Final

from hyperframes_airflow.contract._js import JS_TRIM_CHARS, MAX_SAFE_INTEGER, js_type_of
from hyperframes_airflow.contract.execution import execution_name_problem
from hyperframes_airflow.contract.issues import Issue, Severity
from hyperframes_airflow.contract.json_values import (
    MAX_VARIABLES_DEPTH,
    has_lone_surrogate,
    scan_variables,
)
from hyperframes_airflow.contract.output_keys import quote_key

__all__ = [
    "BATCH_FIELDS",
    "decode_row_object",
    "error_issue",
    "has_unknown_fields",
    "invalid_json",
    "may_hold_lone_surrogate",
    "read_execution_name",
    "read_output_key",
    "read_variables",
    "unknown_field_issues",
]

#: The fields a row may have; anything else is reported (a warning, or an error when strict).
BATCH_FIELDS: Final = ("outputKey", "variables", "executionName")

_FIELD_SET: Final = frozenset(BATCH_FIELDS)
# A lone surrogate can only come from a `\uD8xx`-`\uDFxx` escape (or a raw one in str input);
# only lines matching this pay for looking at every string.
_MAYBE_SURROGATE_RE: Final = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_NOT_AN_OBJECT: Final = 'each line must be a JSON object with at least { "outputKey": "..." }.'
_MAX_UNKNOWN_FIELDS_SHOWN: Final = 5


def may_hold_lone_surrogate(text: str) -> bool:
    """Cheap test on the raw line: only lines that pass it pay for looking at every string."""
    return ("\\u" in text or not text.isascii()) and bool(_MAYBE_SURROGATE_RE.search(text))


def has_unknown_fields(obj: dict[str, Any]) -> bool:
    return not obj.keys() <= _FIELD_SET


class _RejectedConstant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _RejectedConstant(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        # JS would turn it into Infinity and later serialise it as null; refuse instead.
        raise _RejectedConstant("a number is out of range (JSON numbers must be finite)")
    return value


_decoder: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)


def decode_row_object(lineno: int, raw: str, text: str) -> dict[str, Any] | Issue:
    """The line's JSON object, or the issue that rejects the whole line."""
    try:
        # `text` is trimmed, so raw_decode (no whitespace skipping) is enough, and faster.
        obj, end = _decoder.raw_decode(text)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as exc:
        column = exc.colno + raw.find(text[:1])  # physical column: count trimmed space
        return invalid_json(lineno, f"{exc.msg.removesuffix(' at')} at column {column}")
    except _RejectedConstant as exc:  # NaN, Infinity, -Infinity, 1e999
        return invalid_json(lineno, str(exc))
    except ValueError:  # Python refuses to convert integers of over 4300 digits
        return invalid_json(lineno, "a number has too many digits")
    except RecursionError:
        return invalid_json(lineno, "nested too deeply")
    if not isinstance(obj, dict):
        return error_issue(lineno, None, f"Invalid batch entry on line {lineno}: {_NOT_AN_OBJECT}")
    return obj


class _Missing:
    """Sentinel for an absent JSON key (distinct from an explicit null)."""


_MISSING: Final = _Missing()


def read_output_key(
    obj: dict[str, Any], lineno: int, strings: bool, issues: list[Issue]
) -> tuple[str | None, str | None]:
    """(the key the manifest may name, the key the row claims), each None when unusable.

    A blank key is kept for the manifest but claims nothing; a key with a lone surrogate is
    neither (the manifest could not write it as UTF-8).
    """
    key = obj.get("outputKey", _MISSING)
    if isinstance(key, str) and key.strip(JS_TRIM_CHARS):
        if strings and has_lone_surrogate(key):
            issues.append(_surrogate_issue(lineno, "outputKey"))
            return None, None
        return key, key
    if key is _MISSING:
        issues.append(error_issue(lineno, "outputKey", f"Missing outputKey on line {lineno}"))
        return None, None
    if isinstance(key, str):
        got = "got only whitespace" if key else "got an empty string"
    else:
        got = f"got {_json_type(key)}"
    issues.append(
        error_issue(
            lineno,
            "outputKey",
            f'Missing outputKey on line {lineno}: "outputKey" must be a non-empty string, {got}',
        )
    )
    return (key if isinstance(key, str) else None), None


def read_variables(
    obj: dict[str, Any], lineno: int, strings: bool, issues: list[Issue]
) -> dict[str, Any]:
    raw = obj.get("variables", _MISSING)
    if raw is _MISSING:
        return {}
    if not isinstance(raw, dict):
        issues.append(
            error_issue(
                lineno,
                "variables",
                f'Invalid variables on line {lineno}: "variables" must be a JSON object '
                f"(or omitted). Got {_json_type(raw)}.",
            )
        )
        return {}
    scan = scan_variables(raw, check_strings=strings) if raw else None
    if scan is None:
        return raw
    if scan.lone_surrogate:
        issues.append(_surrogate_issue(lineno, "variables"))
    if scan.too_deep_under:
        issues.append(
            error_issue(
                lineno,
                "variables",
                f"Invalid variables on line {lineno}: {scan.too_deep_under} nests deeper than "
                f"{MAX_VARIABLES_DEPTH} levels of objects and arrays; flatten it",
            )
        )
    if scan.big_integers:
        paths = ", ".join(scan.big_integers[:5])
        if len(scan.big_integers) > 5:
            paths += f" (and {len(scan.big_integers) - 5} more)"
        verb = "is an integer" if len(scan.big_integers) == 1 else "are integers"
        issues.append(
            error_issue(
                lineno,
                "variables",
                f"Invalid variables on line {lineno}: {paths} {verb} beyond "
                f"±{MAX_SAFE_INTEGER} (2^53 - 1), which Node's JSON.parse would round to another "
                "value; send it as a string",
            )
        )
    return raw


def read_execution_name(
    obj: dict[str, Any], lineno: int, strings: bool, issues: list[Issue]
) -> str | None:
    name = obj.get("executionName", _MISSING)
    if name is _MISSING:
        return None
    if not isinstance(name, str):
        issues.append(
            error_issue(
                lineno,
                "executionName",
                f"Invalid executionName on line {lineno}: must be a string, got {_json_type(name)}",
            )
        )
        return None
    if strings and has_lone_surrogate(name):
        issues.append(_surrogate_issue(lineno, "executionName"))
        return None
    problem = execution_name_problem(name)
    if problem:
        issues.append(
            error_issue(
                lineno, "executionName", f"Invalid executionName on line {lineno}: {problem}"
            )
        )
    return name


def unknown_field_issues(obj: dict[str, Any], lineno: int, severity: Severity) -> list[Issue]:
    """One issue per field the row does not have (a few shown, then a count), with a hint when
    the name is a case, separator or plural variant of a real field."""
    unknown = [name for name in obj if name not in _FIELD_SET]
    consequence = "the row is rejected" if severity == "error" else "it is ignored"
    known = '"outputKey", "variables" and "executionName"'
    issues = []
    for name in unknown[:_MAX_UNKNOWN_FIELDS_SHOWN]:
        hint = _field_hint(name)
        hint_text = f' (did you mean "{hint}"?)' if hint else ""
        issues.append(
            Issue(
                lineno,
                name if len(name) <= 120 else name[:120] + "…",
                severity,
                f"Unknown field {quote_key(name)} on line {lineno}{hint_text}: a row has only "
                f"{known}, so {consequence}",
            )
        )
    if len(unknown) > _MAX_UNKNOWN_FIELDS_SHOWN:
        more = len(unknown) - _MAX_UNKNOWN_FIELDS_SHOWN
        issues.append(
            Issue(lineno, None, severity, f"{more} more unknown field(s) on line {lineno}")
        )
    return issues


def _normalised_field(name: str) -> str:
    folded = name.casefold().replace("_", "").replace("-", "").replace(" ", "")
    return folded.removesuffix("s")


_FIELD_BY_NORMALISED: Final = {_normalised_field(name): name for name in BATCH_FIELDS}


def _field_hint(name: str) -> str | None:
    """The real field `name` was probably meant to be (`Variables`, `output_key`, `variable`)."""
    hint = _FIELD_BY_NORMALISED.get(_normalised_field(name))
    if hint is None:
        close = difflib.get_close_matches(name.casefold(), list(_FIELD_BY_NORMALISED), 1, 0.8)
        hint = _FIELD_BY_NORMALISED[close[0]] if close else None
    return hint


# --- messages ---------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    """Name a JSON value's type for a message ("a string", "null"), never its value."""
    kind = js_type_of(value)
    return {"null": "null", "array": "an array", "object": "an object"}.get(kind, f"a {kind}")


def invalid_json(lineno: int, detail: str, field_name: str | None = None) -> Issue:
    return Issue(
        lineno, field_name, "error", f"Invalid JSON in batch file on line {lineno}: {detail}"
    )


def _surrogate_issue(lineno: int, field_name: str) -> Issue:
    detail = (
        f'lone UTF-16 surrogate in "{field_name}" (\\uD800-\\uDFFF escapes must come in pairs); '
        "it cannot be encoded as UTF-8"
    )
    return invalid_json(lineno, detail, field_name)


def error_issue(lineno: int, field_name: str | None, message: str) -> Issue:
    return Issue(lineno, field_name, "error", message)
