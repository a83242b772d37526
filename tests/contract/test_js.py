"""Where Python and JavaScript read the same text differently: one shared answer each."""

from __future__ import annotations

import unicodedata

from hyperframes_airflow.contract._js import JS_TRIM_CHARS, MAX_SAFE_INTEGER, js_trim


def test_trim_set_is_ecmascript_whitespace_and_line_terminators() -> None:
    # ECMAScript WhiteSpace: TAB, VT, FF, ZWNBSP (U+FEFF) and every Zs; LineTerminator: LF, CR,
    # LS, PS. (Checked against Node 20: `(ch + "x").trim() === "x"` for every BMP character.)
    zs = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"}
    expected = zs | set("\t\v\f\ufeff\n\r\u2028\u2029")
    assert set(JS_TRIM_CHARS) == expected
    assert len(JS_TRIM_CHARS) == len(expected) == 25


def test_js_trim_differs_from_python_strip() -> None:
    assert js_trim("\ufeff\u3000 x \u2029") == "x"
    assert js_trim("\x1cx\x85") == "\x1cx\x85"  # Python's strip() would remove both
    assert "\ufeffx".strip() == "\ufeffx"  # ... and keep the BOM JS removes


def test_max_safe_integer() -> None:
    assert MAX_SAFE_INTEGER == 9007199254740991
    assert float(MAX_SAFE_INTEGER) == MAX_SAFE_INTEGER
    assert float(MAX_SAFE_INTEGER + 2) != MAX_SAFE_INTEGER + 2  # a double cannot hold it
