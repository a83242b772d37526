"""RenderConfig: Node validation order and messages, and the wire document."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from datetime import date
from types import MappingProxyType
from typing import Any

import pytest

from hyperframes_airflow.contract.config import (
    InvalidConfigError,
    RenderConfig,
    validate_config,
    validate_variables_payload,
)

BASE: dict[str, Any] = {"fps": 30, "width": 640, "height": 360, "format": "mp4"}


def _error(data: Any) -> InvalidConfigError:
    with pytest.raises(InvalidConfigError) as excinfo:
        validate_config(data)
    return excinfo.value


# --- construction and defaults ------------------------------------------------------------


def test_defaults_match_the_cli() -> None:
    config = RenderConfig(width=640, height=360)
    assert (config.fps, config.format, config.runtime_cap) == (30, "mp4", "lambda")
    assert config.codec is None and config.chunk_size is None


def test_accepts_node_camel_case_and_snake_case() -> None:
    camel = RenderConfig.model_validate(
        {**BASE, "maxParallelChunks": 8, "videoFrameFormat": "png", "workerConcurrency": 4}
    )
    snake = RenderConfig(
        width=640, height=360, max_parallel_chunks=8, video_frame_format="png", worker_concurrency=4
    )
    assert camel == snake
    assert camel.max_parallel_chunks == 8


def test_integral_floats_are_stored_as_int() -> None:
    config = RenderConfig.model_validate({**BASE, "fps": 30.0, "width": 640.0, "chunkSize": 240.0})
    assert config.fps == 30 and type(config.fps) is int
    assert type(config.width) is int and type(config.chunk_size) is int


def test_config_is_frozen() -> None:
    config = RenderConfig(width=640, height=360)
    with pytest.raises(Exception, match="frozen"):
        config.fps = 60


def test_error_is_not_a_value_error_and_escapes_pydantic_unchanged() -> None:
    assert not issubclass(InvalidConfigError, ValueError)
    with pytest.raises(InvalidConfigError) as excinfo:
        RenderConfig(fps=25, width=640, height=360)
    err = excinfo.value
    assert str(err) == "[validateConfig] config.fps: must be one of 24, 30, 60; got 25"
    assert err.field == "config.fps"
    assert err.detail == "must be one of 24, 30, 60; got 25"
    assert err.name == "InvalidConfigError"


# --- every Node check, exact message ------------------------------------------------------

CASES: list[tuple[dict[str, Any], str, str]] = [
    ({**BASE, "fps": 25}, "config.fps", "must be one of 24, 30, 60; got 25"),
    ({**BASE, "fps": None}, "config.fps", "must be one of 24, 30, 60; got null"),
    ({**BASE, "fps": "30"}, "config.fps", "must be one of 24, 30, 60; got 30"),
    ({**BASE, "fps": True}, "config.fps", "must be one of 24, 30, 60; got true"),
    ({**BASE, "fps": 29.97}, "config.fps", "must be one of 24, 30, 60; got 29.97"),
    (
        {"fps": 30, "format": "mp4", "height": 360},
        "config.width",
        "must be an integer; got undefined",
    ),
    ({**BASE, "width": True}, "config.width", "must be an integer; got true"),
    ({**BASE, "width": "640"}, "config.width", "must be an integer; got 640"),
    ({**BASE, "width": 25.5}, "config.width", "must be an integer; got 25.5"),
    ({**BASE, "width": None}, "config.width", "must be an integer; got null"),
    ({**BASE, "width": 8}, "config.width", "must be in [16, 7680]; got 8"),
    ({**BASE, "width": 7682.0}, "config.width", "must be in [16, 7680]; got 7682"),
    ({**BASE, "width": 17}, "config.width", "must be even (yuv420p constraint); got 17"),
    ({**BASE, "height": 361}, "config.height", "must be even (yuv420p constraint); got 361"),
    (
        {**BASE, "format": "gif"},
        "config.format",
        "must be one of mp4, mov, png-sequence, webm; got gif",
    ),
    (
        {**BASE, "format": None},
        "config.format",
        "must be one of mp4, mov, png-sequence, webm; got null",
    ),
    (
        {**BASE, "outputResolution": "8k"},
        "config.outputResolution",
        "must be one of landscape, portrait, landscape-4k, portrait-4k, square, square-4k; got 8k",
    ),
    (
        {**BASE, "outputResolutionAspectAgnostic": "yes"},
        "config.outputResolutionAspectAgnostic",
        "must be a boolean; got yes",
    ),
    (
        {**BASE, "format": "webm", "codec": "h264"},
        "config.codec",
        'is only valid with format="mp4"; got format=webm',
    ),
    ({**BASE, "codec": "vp9"}, "config.codec", "must be one of h264, h265; got vp9"),
    (
        {**BASE, "quality": "ultra"},
        "config.quality",
        "must be one of draft, standard, high; got ultra",
    ),
    (
        {**BASE, "videoFrameFormat": "webp"},
        "config.videoFrameFormat",
        "must be one of auto, jpg, png; got webp",
    ),
    (
        {**BASE, "crf": 20, "bitrate": "10M"},
        "config.crf",
        "is mutually exclusive with config.bitrate",
    ),
    ({**BASE, "crf": 52}, "config.crf", "must be an integer in [0, 51]; got 52"),
    ({**BASE, "crf": -1}, "config.crf", "must be an integer in [0, 51]; got -1"),
    ({**BASE, "crf": 1.5}, "config.crf", "must be an integer in [0, 51]; got 1.5"),
    ({**BASE, "crf": False}, "config.crf", "must be an integer in [0, 51]; got false"),
    ({**BASE, "bitrate": "10 M"}, "config.bitrate", 'must look like "10M" or "5000k"; got "10 M"'),
    (
        {**BASE, "bitrate": "10M\n"},
        "config.bitrate",
        'must look like "10M" or "5000k"; got "10M\\n"',
    ),
    (  # JS \d is ASCII only
        {**BASE, "bitrate": "\u0661\u0660M"},
        "config.bitrate",
        'must look like "10M" or "5000k"; got "\u0661\u0660M"',
    ),
    (
        {**BASE, "bitrate": 5000},
        "config.bitrate",
        'must be a string like "10M" or "5000k"; got 5000',
    ),
    ({**BASE, "chunkSize": 0}, "config.chunkSize", "must be a positive integer; got 0"),
    ({**BASE, "chunkSize": 2.5}, "config.chunkSize", "must be a positive integer; got 2.5"),
    ({**BASE, "chunkSize": 3601}, "config.chunkSize", "must be <= 3600; got 3601"),
    ({**BASE, "chunkSize": 1e21}, "config.chunkSize", "must be <= 3600; got 1e+21"),
    ({**BASE, "chunkSize": 1e-7}, "config.chunkSize", "must be a positive integer; got 1e-7"),
    ({**BASE, "chunkSize": 1e-6}, "config.chunkSize", "must be a positive integer; got 0.000001"),
    ({**BASE, "chunkSize": 1e16}, "config.chunkSize", "must be <= 3600; got 10000000000000000"),
    (
        {**BASE, "maxParallelChunks": 0},
        "config.maxParallelChunks",
        "must be a positive integer; got 0",
    ),
    ({**BASE, "maxParallelChunks": 257}, "config.maxParallelChunks", "must be <= 256; got 257"),
    (
        {**BASE, "targetChunkFrames": True},
        "config.targetChunkFrames",
        "must be a positive integer; got true",
    ),
    ({**BASE, "targetChunkFrames": 3601}, "config.targetChunkFrames", "must be <= 3600; got 3601"),
    (
        {**BASE, "workerTimeoutSeconds": 0},
        "config.workerTimeoutSeconds",
        "must be a positive integer; got 0",
    ),
    (
        {**BASE, "workerConcurrency": -1},
        "config.workerConcurrency",
        "must be a positive integer; got -1",
    ),
    (
        {**BASE, "runtimeCap": "ecs"},
        "config.runtimeCap",
        "must be one of lambda, temporal, cloud-run-job, k8s-job, none; got ecs",
    ),
    (
        {**BASE, "hdrMode": "force-hdr"},
        "config.hdrMode",
        "distributed mode supports only auto, force-sdr; got force-hdr",
    ),
    (
        {**BASE, "engineConfig": [1]},
        "config.engineConfig",
        "Engine config snapshot must be a plain object",
    ),
    ({**BASE, "rejectOnSystemFonts": 1}, "config.rejectOnSystemFonts", "must be a boolean; got 1"),
    (
        {**BASE, "failClosedFontFetch": "no"},
        "config.failClosedFontFetch",
        "must be a boolean; got no",
    ),
    ({**BASE, "cfr": 0}, "config.cfr", "must be a boolean; got 0"),
    ({**BASE, "entryFile": ""}, "config.entryFile", 'must be a non-empty string; got ""'),
    (
        {**BASE, "strictness": "lenient"},
        "config.strictness",
        "must be one of strict, best-effort; got lenient",
    ),
]


@pytest.mark.parametrize(("data", "field", "detail"), CASES, ids=[c[1] + ":" + c[2] for c in CASES])
def test_each_check_has_the_node_message(data: dict[str, Any], field: str, detail: str) -> None:
    err = _error(data)
    assert err.field == field
    assert str(err) == f"[validateConfig] {field}: {detail}"


ORDER = [
    # (fields making one check fail, the field expected to be reported first)
    ({"fps": 25, "width": 17}, "config.fps"),
    ({"width": 17, "height": 1}, "config.width"),
    ({"height": 1, "format": "gif"}, "config.height"),
    ({"format": "gif", "outputResolution": "8k"}, "config.format"),
    ({"outputResolution": "8k", "codec": "vp9"}, "config.outputResolution"),
    ({"codec": "vp9", "quality": "x"}, "config.codec"),
    ({"quality": "x", "videoFrameFormat": "x"}, "config.quality"),
    ({"videoFrameFormat": "x", "crf": 99}, "config.videoFrameFormat"),
    ({"crf": 99, "chunkSize": 0}, "config.crf"),
    ({"bitrate": "x", "chunkSize": 0}, "config.bitrate"),
    ({"chunkSize": 0, "maxParallelChunks": 0}, "config.chunkSize"),
    ({"maxParallelChunks": 0, "targetChunkFrames": 0}, "config.maxParallelChunks"),
    ({"targetChunkFrames": 0, "workerTimeoutSeconds": 0}, "config.targetChunkFrames"),
    ({"workerTimeoutSeconds": 0, "workerConcurrency": 0}, "config.workerTimeoutSeconds"),
    ({"workerConcurrency": 0, "runtimeCap": "x"}, "config.workerConcurrency"),
    ({"runtimeCap": "x", "hdrMode": "x"}, "config.runtimeCap"),
    ({"hdrMode": "x", "engineConfig": 1}, "config.hdrMode"),
    ({"engineConfig": 1, "rejectOnSystemFonts": 1}, "config.engineConfig"),
    ({"rejectOnSystemFonts": 1, "failClosedFontFetch": 1}, "config.rejectOnSystemFonts"),
    ({"failClosedFontFetch": 1, "cfr": 1}, "config.failClosedFontFetch"),
    ({"cfr": 1, "entryFile": 1}, "config.cfr"),
    ({"entryFile": 1, "strictness": 1}, "config.entryFile"),
]


@pytest.mark.parametrize(("bad", "first"), ORDER, ids=[o[1] for o in ORDER])
def test_checks_run_in_node_order(bad: dict[str, Any], first: str) -> None:
    assert _error({**BASE, **bad}).field == first


def test_codec_check_names_the_format_even_when_codec_is_valid() -> None:
    assert str(_error({**BASE, "format": "mov", "codec": "h265"})) == (
        '[validateConfig] config.codec: is only valid with format="mp4"; got format=mov'
    )


def test_non_mapping_config() -> None:
    for bad in (None, [1], "config", 3):
        err = _error(bad)
        assert str(err) == "[validateConfig] config: must be an object"


# --- Python-side input handling -----------------------------------------------------------


def test_none_means_unset_for_optional_fields() -> None:
    validate_config({**BASE, "crf": None, "codec": None, "chunk_size": None})
    config = RenderConfig.model_validate({**BASE, "crf": None})
    assert config.crf is None and "crf" not in config.to_wire()


def test_none_is_js_null_where_the_field_has_a_value_default() -> None:
    assert str(_error({**BASE, "runtimeCap": None})) == (
        "[validateConfig] config.runtimeCap: must be one of lambda, temporal, cloud-run-job, "
        "k8s-job, none; got null"
    )
    assert _error({**BASE, "format": None}).field == "config.format"


def test_missing_fps_and_format_take_cli_defaults() -> None:
    validate_config({"width": 640, "height": 360})
    assert (
        str(_error({"fps": 30}))
        == "[validateConfig] config.width: must be an integer; got undefined"
    )


def test_unknown_keys_are_rejected_with_a_hint() -> None:
    err = _error({**BASE, "chunksize": 10})
    assert err.field == "config.chunksize"
    assert str(err) == (
        "[validateConfig] config.chunksize: is not a known config field; did you mean chunkSize?"
    )
    assert (
        str(_error({**BASE, "zzz": 1}))
        == "[validateConfig] config.zzz: is not a known config field"
    )
    assert str(_error({**BASE, "chunksize_": 1})).endswith("did you mean chunk_size?")


def test_variables_are_not_a_config_field() -> None:
    err = _error({**BASE, "variables": {"title": "x"}})
    assert err.field == "config.variables"
    assert "per batch row" in str(err)


def test_the_same_field_twice_is_rejected() -> None:
    err = _error({**BASE, "chunk_size": 10, "chunkSize": 20})
    assert (
        str(err)
        == "[validateConfig] config.chunkSize: is given twice (as chunk_size and chunkSize)"
    )


def test_valid_full_config_passes() -> None:
    validate_config(
        {
            **BASE,
            "codec": "h265",
            "quality": "high",
            "crf": 0,
            "videoFrameFormat": "jpg",
            "outputResolution": "portrait-4k",
            "outputResolutionAspectAgnostic": True,
            "chunkSize": 3600,
            "maxParallelChunks": 256,
            "targetChunkFrames": 1,
            "workerConcurrency": 8,
            "workerTimeoutSeconds": 900,
            "runtimeCap": "none",
            "hdrMode": "auto",
            "engineConfig": {},
            "rejectOnSystemFonts": True,
            "failClosedFontFetch": False,
            "cfr": False,
            "entryFile": "main.html",
            "strictness": "best-effort",
        }
    )
    validate_config({**BASE, "bitrate": "5000k"})
    validate_config({**BASE, "bitrate": "2.5M"})


# --- variables payload (check 14) ---------------------------------------------------------

PAYLOAD_ERRORS: list[tuple[Any, str]] = [
    (None, "config.variables: must be a plain JSON object (got null)"),
    ([], "config.variables: must be a plain JSON object (got array)"),
    ((1,), "config.variables: must be a plain JSON object (got array)"),
    ("x", "config.variables: must be a plain JSON object (got string)"),
    (1.5, "config.variables: must be a plain JSON object (got number)"),
    (True, "config.variables: must be a plain JSON object (got boolean)"),
    (MappingProxyType({}), "config.variables: must be a plain JSON object (got mappingproxy)"),
    (
        {"score": math.nan},
        "config.variables.score: non-finite numbers (NaN / Infinity) are not JSON-serializable; "
        "got NaN",
    ),
    (
        {"a": {"b": [1, -math.inf]}},
        "config.variables.a.b[1]: non-finite numbers (NaN / Infinity) are not JSON-serializable; "
        "got -Infinity",
    ),
    (
        {"arr": [{"k": math.inf}]},
        "config.variables.arr[0].k: non-finite numbers (NaN / Infinity) are not JSON-serializable; "
        "got Infinity",
    ),
    (
        {"when": date(2026, 5, 1)},
        "config.variables.when: non-plain objects are not supported (got date); "
        "use a plain {\u2026} object",
    ),
    (
        {"tags": {"a", "b"}},
        "config.variables.tags: non-plain objects are not supported (got set); "
        "use a plain {\u2026} object",
    ),
    ({"m": {1: "x"}}, "config.variables.m: object keys must be strings (got int)"),
    (
        {"s": "bad \ud800"},
        "config.variables.s: strings must be valid Unicode; got a lone surrogate",
    ),
]


@pytest.mark.parametrize(("payload", "message"), PAYLOAD_ERRORS, ids=[m for _, m in PAYLOAD_ERRORS])
def test_variables_payload_errors(payload: Any, message: str) -> None:
    with pytest.raises(InvalidConfigError) as excinfo:
        validate_variables_payload(payload)
    assert str(excinfo.value) == f"[validateConfig] {message}"


def test_variables_payload_cycle() -> None:
    payload: dict[str, Any] = {"a": []}
    payload["a"].append(payload)
    with pytest.raises(InvalidConfigError, match="circular reference detected"):
        validate_variables_payload(payload)


def test_variables_payload_accepts_json_values_and_shared_references() -> None:
    shared = {"x": 1}
    validate_variables_payload(
        {
            "s": "é",
            "n": 1,
            "f": 1.5,
            "b": False,
            "z": None,
            "l": [1, (2, 3)],
            "a": shared,
            "c": shared,
        }
    )
    validate_variables_payload(OrderedDict(title="x"))
    validate_variables_payload({})


# --- wire document ------------------------------------------------------------------------


def test_wire_matches_the_cli_example() -> None:
    config = RenderConfig(width=640, height=360, worker_concurrency=8)
    wire = config.to_wire({"title": "Hi #99"})
    assert json.dumps(wire, separators=(",", ":"), ensure_ascii=False) == (
        '{"fps":30,"width":640,"height":360,"format":"mp4","workerConcurrency":8,'
        '"runtimeCap":"lambda","variables":{"title":"Hi #99"}}'
    )


def test_wire_without_variables_omits_the_key() -> None:
    wire = RenderConfig(width=640, height=360).to_wire()
    assert wire == {"fps": 30, "width": 640, "height": 360, "format": "mp4", "runtimeCap": "lambda"}
    assert "variables" in RenderConfig(width=640, height=360).to_wire({})


def test_wire_order_with_every_field() -> None:
    config = RenderConfig.model_validate(
        {
            "strictness": "strict",
            "workerTimeoutSeconds": 600.0,
            "entryFile": "index.html",
            "cfr": False,
            "failClosedFontFetch": True,
            "rejectOnSystemFonts": True,
            "engineConfig": {"k": 1},
            "hdrMode": "force-sdr",
            "videoFrameFormat": "auto",
            "bitrate": "10M",
            "outputResolutionAspectAgnostic": True,
            "runtimeCap": "lambda",
            "workerConcurrency": 8,
            "targetChunkFrames": 120,
            "maxParallelChunks": 16,
            "chunkSize": 240,
            "quality": "standard",
            "codec": "h264",
            "format": "mp4",
            "outputResolution": "landscape",
            "height": 1080,
            "width": 1920,
            "fps": 60.0,
        }
    )
    wire = config.to_wire({"t": 1})
    assert list(wire) == [
        "fps",
        "width",
        "height",
        "outputResolution",
        "format",
        "codec",
        "quality",
        "chunkSize",
        "maxParallelChunks",
        "targetChunkFrames",
        "workerConcurrency",
        "runtimeCap",
        "bitrate",
        "videoFrameFormat",
        "hdrMode",
        "engineConfig",
        "rejectOnSystemFonts",
        "failClosedFontFetch",
        "cfr",
        "entryFile",
        "strictness",
        "workerTimeoutSeconds",
        "outputResolutionAspectAgnostic",
        "variables",
    ]
    assert type(wire["fps"]) is int and type(wire["workerTimeoutSeconds"]) is int
    assert "null" not in json.dumps(wire)
    assert ".0" not in json.dumps(wire)


def test_wire_lists_every_model_field() -> None:
    aliases = {
        field.serialization_alias or name for name, field in RenderConfig.model_fields.items()
    }
    config_keys = set(RenderConfig(width=16, height=16).to_wire())
    assert config_keys <= aliases
    from hyperframes_airflow.contract import config as module

    assert set(module._WIRE_ORDER) == aliases


def test_wire_crf_sits_before_bitrate_slot() -> None:
    wire = RenderConfig(width=640, height=360, crf=18, quality="high").to_wire()
    assert list(wire) == ["fps", "width", "height", "format", "quality", "runtimeCap", "crf"]


def test_wire_validates_variables() -> None:
    config = RenderConfig(width=640, height=360)
    with pytest.raises(InvalidConfigError, match=r"config\.variables\.x: non-finite"):
        config.to_wire({"x": math.nan})
    wire = config.to_wire(MappingProxyType({"title": "x"}))
    assert wire["variables"] == {"title": "x"} and type(wire["variables"]) is dict


def test_wire_revalidates_after_model_copy() -> None:
    config = RenderConfig(width=640, height=360).model_copy(update={"fps": 25})
    with pytest.raises(InvalidConfigError, match=r"config\.fps"):
        config.to_wire()


def test_wire_engine_config_is_a_copy() -> None:
    config = RenderConfig(width=640, height=360, engine_config={"a": {"b": 1}})
    config.to_wire()["engineConfig"]["a"]["b"] = 2
    assert config.engine_config == {"a": {"b": 1}}


def test_model_dump_round_trips_through_model_validate() -> None:
    config = RenderConfig(width=640, height=360, chunk_size=120, output_resolution="square")
    again = RenderConfig.model_validate(config.model_dump(by_alias=True))
    assert again == config
    assert RenderConfig.model_validate(config.model_dump()) == config
    assert RenderConfig.model_validate(config) is config


def _nest(depth: int) -> dict[str, Any]:
    """A `variables` object `depth` levels deep (itself being level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_variables_payload_depth_is_limited_not_a_recursion_error() -> None:
    validate_variables_payload(_nest(64))  # the batch parser's limit: accepted
    for depth in (65, 5000):
        with pytest.raises(InvalidConfigError) as excinfo:
            validate_variables_payload(_nest(depth))
        assert str(excinfo.value).endswith(
            "nests deeper than 64 levels of objects and arrays; flatten it"
        )
