"""Templated DAG arguments: blank never means off (contract.options)."""

from __future__ import annotations

import math
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from hyperframes_airflow.contract.config import InvalidConfigError, RenderConfig
from hyperframes_airflow.contract.options import (
    parse_bool,
    parse_config_mapping,
    parse_cost_limit,
)

# --- parse_bool ---------------------------------------------------------------------------

TRUE_VALUES: list[Any] = [True, 1, "True", "true", "TRUE", " yes ", "Yes", "on", "ON", "1", "\t1\n"]
FALSE_VALUES: list[Any] = [False, 0, "False", "false", "FALSE", "no", " No ", "off", "Off", "0"]
BLANK_VALUES: list[Any] = [None, "", " ", "\t\n", "none", "None", "NONE", "null", "Null", " null "]
BAD_BOOLS: list[Any] = ["maybe", "tru", "2", "-1", "yes please", "t", "f", "y", "n", 2, -1,
                        1.0, 0.0, [], {}, b"true"]  # fmt: skip


@pytest.mark.parametrize("value", TRUE_VALUES)
@pytest.mark.parametrize("default", [True, False])
def test_true_values(value: Any, default: bool) -> None:
    assert parse_bool(value, name="strict", default=default) is True


@pytest.mark.parametrize("value", FALSE_VALUES)
@pytest.mark.parametrize("default", [True, False])
def test_false_values(value: Any, default: bool) -> None:
    assert parse_bool(value, name="strict", default=default) is False


@pytest.mark.parametrize("value", BLANK_VALUES)
@pytest.mark.parametrize("default", [True, False])
def test_blank_values_mean_the_default_never_off(value: Any, default: bool) -> None:
    # A template that renders "" or "None" must keep a check on when its default is on.
    assert parse_bool(value, name="fail_on_row_failure", default=default) is default


@pytest.mark.parametrize("value", BAD_BOOLS)
def test_anything_else_is_an_error_naming_the_argument_and_value(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_bool(value, name="strict_variables", default=False)
    message = str(info.value)
    assert "strict_variables" in message and repr(value) in message
    assert "true/false" in message


def test_parse_bool_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        parse_bool("true", "strict", True)  # type: ignore[call-arg]


# --- parse_cost_limit ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (0, 0.0), (5, 5.0), (2.5, 2.5), (0.0001, 0.0001), ("0", 0.0), ("2.5", 2.5),
     (" 10 ", 10.0), ("+3", 3.0), ("1e2", 100.0), (".5", 0.5), ("50.", 50.0),
     (Decimal("1.25"), 1.25)],
)  # fmt: skip
def test_cost_limits(value: Any, expected: float | None) -> None:
    result = parse_cost_limit(value)
    assert result == expected
    assert result is None or type(result) is float


@pytest.mark.parametrize("value", ["", " ", "none", "None", "NONE", "null", "Null", "\tnull "])
def test_a_blank_limit_fails_closed_instead_of_disabling_the_gate(value: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_cost_limit(value)
    message = str(info.value)
    assert message.startswith(f"max_cost_usd rendered to {value!r}")
    assert "give a number, or leave the argument out to render without a cost limit" in message


@pytest.mark.parametrize(
    "value",
    ["-1", -1, -0.5, "nan", "NaN", "inf", "Infinity", "-inf", math.inf, math.nan, "abc", "$5",
     "5 USD", "1_000", "0x10", "1,5", True, False, [], {}, b"5", Decimal("NaN"), 10**400],
)  # fmt: skip
def test_bad_limits_are_errors(value: Any) -> None:
    with pytest.raises(ValueError, match="max_cost_usd"):
        parse_cost_limit(value)


def test_the_limit_error_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^budget rendered to ''"):
        parse_cost_limit("", name="budget")
    with pytest.raises(ValueError, match="budget must be"):
        parse_cost_limit("-2", name="budget")


# --- parse_config_mapping -----------------------------------------------------------------


def test_a_render_config_is_dumped_with_wire_names() -> None:
    config = RenderConfig(width=640, height=360, fps=24, chunk_size=120, output_resolution="square")
    dumped = parse_config_mapping(config)
    assert dumped == {
        "fps": 24,
        "width": 640,
        "height": 360,
        "format": "mp4",
        "outputResolution": "square",
        "chunkSize": 120,
        "runtimeCap": "lambda",
    }
    assert RenderConfig.model_validate(dumped) == config


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"width": "640", "height": "360"}, {"width": 640, "height": 360}),
        ({"fps": " 30 ", "chunkSize": "240", "maxParallelChunks": "+4"},
         {"fps": 30, "chunkSize": 240, "maxParallelChunks": 4}),
        ({"max_parallel_chunks": "4", "target_chunk_frames": "90", "worker_concurrency": "8"},
         {"max_parallel_chunks": 4, "target_chunk_frames": 90, "worker_concurrency": 8}),
        ({"crf": "-2"}, {"crf": -2}),  # converted; the Node-style check rejects it later
        ({"quality": "", "codec": None, "crf": "  "}, {}),  # blank = the default
        ({"bitrate": "5000"}, {"bitrate": "5000"}),  # a string field stays a string
        ({"runtimeCap": "none"}, {"runtimeCap": "none"}),  # a real value, not blank
        ({"fps": "30.0", "width": "٣٠"}, {"fps": "30.0", "width": "٣٠"}),  # left for the check
        ({"cfr": "true", "rejectOnSystemFonts": " False ", "outputResolutionAspectAgnostic": "on"},
         {"cfr": True, "rejectOnSystemFonts": False, "outputResolutionAspectAgnostic": True}),
        ({"fail_closed_font_fetch": "None", "cfr": ""}, {}),
        ({"width": 640, "height": 360.0, "cfr": False}, {"width": 640, "height": 360.0,
                                                          "cfr": False}),
    ],
)  # fmt: skip
def test_templated_mappings(given: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse_config_mapping(given) == expected
    assert parse_config_mapping(MappingProxyType(given)) == expected


def test_the_input_is_not_modified() -> None:
    given = {"width": "640", "quality": ""}
    parse_config_mapping(given)
    assert given == {"width": "640", "quality": ""}


def test_a_templated_mapping_validates_like_the_native_one() -> None:
    templated = {"width": "1280", "height": "720", "fps": "60", "quality": "", "cfr": "false"}
    assert RenderConfig.model_validate(parse_config_mapping(templated)) == RenderConfig(
        width=1280, height=720, fps=60, cfr=False
    )
    with pytest.raises(InvalidConfigError, match=r"config\.fps"):
        RenderConfig.model_validate(parse_config_mapping({"width": "640", "height": "360",
                                                          "fps": "30.5"}))  # fmt: skip


def test_a_bad_boolean_entry_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"config\.cfr.*'maybe'"):
        parse_config_mapping({"cfr": "maybe"})


@pytest.mark.parametrize("value", [None, 5, ["width", 640], b"{}"])
def test_non_mappings_are_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match="RenderConfig or a mapping"):
        parse_config_mapping(value)


def test_a_config_that_rendered_to_a_string_says_why() -> None:
    with pytest.raises(ValueError, match="render_template_as_native_obj"):
        parse_config_mapping("{'width': 640, 'height': 360}")
