"""How JavaScript turns values into text and type names, for messages that must match Node's.

The Node SDK builds its validation messages with `String(x)`, `typeof` and its own `jsTypeOf`;
Python's `str()` and type names differ (`True`, `25.0`, `None`), so every message that quotes a
value goes through these. Also here: the other places where Python and JS read the same text or
number differently (`trim()`, safe integers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final


class _Undefined:
    """A key absent from the config document: JS `undefined`."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()

#: What `String.prototype.trim()` strips (ECMAScript WhiteSpace and LineTerminator): U+0009,
#: U+000B, U+000C, U+FEFF, the Zs category (U+0020, U+00A0, U+1680, U+2000-U+200A, U+202F,
#: U+205F, U+3000), then U+000A, U+000D, U+2028, U+2029. Python's `str.strip()` differs: it
#: keeps U+FEFF and also strips U+001C-U+001F and U+0085, which JS keeps.
JS_TRIM_CHARS: Final = (
    "\t\v\f\ufeff \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u202f\u205f\u3000\n\r\u2028\u2029"
)

#: `Number.MAX_SAFE_INTEGER` (2^53 - 1): beyond it a JS number cannot hold every integer, so
#: Node's `JSON.parse` rounds a longer integer literal that Python keeps exact.
MAX_SAFE_INTEGER: Final = 2**53 - 1


def js_trim(text: str) -> str:
    """JS `text.trim()`."""
    return text.strip(JS_TRIM_CHARS)


def js_number_string(value: float) -> str:
    """`Number.prototype.toString()` for a double (Python differs on exponents and `.0`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = exponent + k  # the decimal point sits after n digits
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + text


def js_string(value: Any) -> str:
    """JS `String(value)`, used for the `got X` part of every message."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number_string(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


def js_type_of(value: Any) -> str:
    """`jsTypeOf`: `null`, `array`, or what JS `typeof` says for the JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def js_typeof(value: Any) -> str:
    """JS `typeof` for a JSON value: null and arrays are objects."""
    kind = js_type_of(value)
    return "object" if kind in ("null", "array") else kind
