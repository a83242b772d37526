"""The render `Config` a HyperFrames stack accepts, validated exactly as the Node SDK does.

`RenderConfig` mirrors `SerializableDistributedRenderConfig` (contract §4.1, §10). Validation
reproduces `validateDistributedRenderConfig`'s order and messages so a user sees the same error
here, before any cloud call, that `hyperframes lambda render` would print; a few checks the SDK
skips (`outputResolution`, the boolean/string fields) are added in the same style.
`to_wire` emits the document in the 0.8.170 CLI's key order with unset fields omitted (never
`null`, which the stack rejects) and integral numbers as `int` (Python would write `30.0`).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyperframes_airflow.contract._js import UNDEFINED, js_number_string, js_string, js_type_of
from hyperframes_airflow.contract.json_values import MAX_VARIABLES_DEPTH

__all__ = [
    "CODECS",
    "DEFAULT_FORMAT",
    "DEFAULT_FPS",
    "DEFAULT_RUNTIME_CAP",
    "DISTRIBUTED_FPS",
    "FORMATS",
    "HDR_MODES",
    "OUTPUT_RESOLUTIONS",
    "QUALITIES",
    "RUNTIME_CAPS",
    "STRICTNESS_LEVELS",
    "VIDEO_FRAME_FORMATS",
    "InvalidConfigError",
    "RenderConfig",
    "validate_config",
    "validate_variables_payload",
]

# The fps values distributed renders accept, as in the v0.8.10 SDK the contract describes. The
# 0.8.170 npm release also accepts 25 (`DISTRIBUTED_FPS = [24, 25, 30, 60]` in @hyperframes/core);
# a stack's planner version is unknown to the client, so 25 stays out (add it here to allow it:
# messages and the composition's data-fps fallback follow this tuple).
DISTRIBUTED_FPS: tuple[int, ...] = (24, 30, 60)
FORMATS: tuple[str, ...] = ("mp4", "mov", "png-sequence", "webm")
OUTPUT_RESOLUTIONS: tuple[str, ...] = (
    "landscape",
    "portrait",
    "landscape-4k",
    "portrait-4k",
    "square",
    "square-4k",
)
CODECS: tuple[str, ...] = ("h264", "h265")
QUALITIES: tuple[str, ...] = ("draft", "standard", "high")
VIDEO_FRAME_FORMATS: tuple[str, ...] = ("auto", "jpg", "png")
RUNTIME_CAPS: tuple[str, ...] = ("lambda", "temporal", "cloud-run-job", "k8s-job", "none")
HDR_MODES: tuple[str, ...] = ("auto", "force-sdr")
STRICTNESS_LEVELS: tuple[str, ...] = ("strict", "best-effort")

MIN_DIMENSION = 16
MAX_DIMENSION = 7680
MAX_CHUNK_SIZE = 3600
MAX_PARALLEL_CHUNKS_CEILING = 256


Fps = Literal[24, 30, 60]
Format = Literal["mp4", "mov", "png-sequence", "webm"]
OutputResolution = Literal[
    "landscape", "portrait", "landscape-4k", "portrait-4k", "square", "square-4k"
]
Codec = Literal["h264", "h265"]
Quality = Literal["draft", "standard", "high"]
VideoFrameFormat = Literal["auto", "jpg", "png"]
RuntimeCap = Literal["lambda", "temporal", "cloud-run-job", "k8s-job", "none"]
HdrMode = Literal["auto", "force-sdr"]
Strictness = Literal["strict", "best-effort"]

DEFAULT_FPS: Fps = 30
DEFAULT_FORMAT: Format = "mp4"
DEFAULT_RUNTIME_CAP: RuntimeCap = "lambda"


class InvalidConfigError(Exception):
    """The Node `InvalidConfigError`: `.field` is a dotted path such as `config.fps` and the
    message reads `[validateConfig] <field>: <detail>`.

    Deliberately not a `ValueError`: pydantic wraps `ValueError`s raised in validators into a
    `ValidationError`, which would lose the exact Node text; this one propagates unchanged.
    """

    name = "InvalidConfigError"

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"[validateConfig] {field}: {detail}")


def _json_stringify(value: Any) -> str:
    """`JSON.stringify(value)` for the scalar a user may put in `bitrate`."""
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return js_string(value)


def _is_js_number(value: Any) -> bool:
    """`typeof value === "number"`; Python's bool is an int but JS's boolean is not a number."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_js_integer(value: Any) -> bool:
    """`Number.isInteger(value)`: 30 and 30.0 qualify, True and "30" do not."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def _one_of(value: Any, allowed: tuple[Any, ...]) -> bool:
    """`allowed.includes(value)` without Python's `True == 1` and `30.0 == "30"` pitfalls."""
    if isinstance(value, bool):
        return False
    return isinstance(value, str | int | float) and value in allowed


# --- the checks, in Node order ------------------------------------------------------------

_BITRATE = re.compile(r"\d+(?:\.\d+)?[kKmM]?", re.ASCII)


def _fail(field: str, detail: str) -> InvalidConfigError:
    return InvalidConfigError(field, detail)


def _check_dimension(field: str, value: Any) -> None:
    if not _is_js_integer(value):
        raise _fail(field, f"must be an integer; got {js_string(value)}")
    if value < MIN_DIMENSION or value > MAX_DIMENSION:
        raise _fail(field, f"must be in [{MIN_DIMENSION}, {MAX_DIMENSION}]; got {js_string(value)}")
    if value % 2 != 0:
        raise _fail(field, f"must be even (yuv420p constraint); got {js_string(value)}")


def _check_enum(
    field: str, value: Any, allowed: tuple[str, ...], lead: str = "must be one of"
) -> None:
    if value is not UNDEFINED and not _one_of(value, allowed):
        raise _fail(field, f"{lead} {', '.join(allowed)}; got {js_string(value)}")


def _check_count(field: str, value: Any, maximum: int | None) -> None:
    """An optional positive integer, optionally capped (chunk sizes, parallelism, workers)."""
    if value is UNDEFINED:
        return
    if not _is_js_integer(value) or value < 1:
        raise _fail(field, f"must be a positive integer; got {js_string(value)}")
    if maximum is not None and value > maximum:
        raise _fail(field, f"must be <= {maximum}; got {js_string(value)}")


def _check_boolean(field: str, value: Any) -> None:
    if value is not UNDEFINED and not isinstance(value, bool):
        raise _fail(field, f"must be a boolean; got {js_string(value)}")


def _check_document(doc: Mapping[str, Any]) -> None:
    """`validateDistributedRenderConfig` on a camelCase document (absent key = `undefined`,
    None = `null`), plus our extra checks at the places documented in the module."""
    if not isinstance(doc, Mapping):
        raise _fail("config", "must be an object")

    def get(key: str) -> Any:
        return doc.get(key, UNDEFINED)

    fps = get("fps")
    if not (_is_js_number(fps) and fps in DISTRIBUTED_FPS):
        allowed = ", ".join(map(str, DISTRIBUTED_FPS))
        raise _fail("config.fps", f"must be one of {allowed}; got {js_string(fps)}")

    _check_dimension("config.width", get("width"))
    _check_dimension("config.height", get("height"))

    fmt = get("format")
    if not _one_of(fmt, FORMATS):
        raise _fail("config.format", f"must be one of {', '.join(FORMATS)}; got {js_string(fmt)}")

    # Not checked by the SDK (a bad value fails minutes later in Plan): ours.
    _check_enum("config.outputResolution", get("outputResolution"), OUTPUT_RESOLUTIONS)
    _check_boolean("config.outputResolutionAspectAgnostic", get("outputResolutionAspectAgnostic"))

    codec = get("codec")
    if codec is not UNDEFINED:
        if fmt != "mp4":
            raise _fail(
                "config.codec", f'is only valid with format="mp4"; got format={js_string(fmt)}'
            )
        _check_enum("config.codec", codec, CODECS)

    _check_enum("config.quality", get("quality"), QUALITIES)
    _check_enum("config.videoFrameFormat", get("videoFrameFormat"), VIDEO_FRAME_FORMATS)

    crf, bitrate = get("crf"), get("bitrate")
    if crf is not UNDEFINED and bitrate is not UNDEFINED:
        raise _fail("config.crf", "is mutually exclusive with config.bitrate")
    if crf is not UNDEFINED and (not _is_js_integer(crf) or crf < 0 or crf > 51):
        raise _fail("config.crf", f"must be an integer in [0, 51]; got {js_string(crf)}")
    if bitrate is not UNDEFINED:
        if not _BITRATE.fullmatch(js_string(bitrate)):
            raise _fail(
                "config.bitrate", f'must look like "10M" or "5000k"; got {_json_stringify(bitrate)}'
            )
        if not isinstance(bitrate, str):  # JS coerces 5000 to "5000"; we keep the type honest
            raise _fail(
                "config.bitrate",
                f'must be a string like "10M" or "5000k"; got {_json_stringify(bitrate)}',
            )

    _check_count("config.chunkSize", get("chunkSize"), MAX_CHUNK_SIZE)
    _check_count("config.maxParallelChunks", get("maxParallelChunks"), MAX_PARALLEL_CHUNKS_CEILING)
    _check_count("config.targetChunkFrames", get("targetChunkFrames"), MAX_CHUNK_SIZE)
    _check_count("config.workerTimeoutSeconds", get("workerTimeoutSeconds"), None)
    _check_count("config.workerConcurrency", get("workerConcurrency"), None)

    _check_enum("config.runtimeCap", get("runtimeCap"), RUNTIME_CAPS)
    _check_enum("config.hdrMode", get("hdrMode"), HDR_MODES, lead="distributed mode supports only")

    if "variables" in doc:
        validate_variables_payload(doc["variables"])

    engine_config = get("engineConfig")
    if engine_config is not UNDEFINED and not isinstance(engine_config, dict):
        # Only the first rule of `validateEngineConfigSnapshot`; the full snapshot rules are not
        # ported (the contract advises omitting engineConfig).
        raise _fail("config.engineConfig", "Engine config snapshot must be a plain object")

    # Fields the SDK passes through unchecked: ours, in the §4.1 table order.
    _check_boolean("config.rejectOnSystemFonts", get("rejectOnSystemFonts"))
    _check_boolean("config.failClosedFontFetch", get("failClosedFontFetch"))
    _check_boolean("config.cfr", get("cfr"))
    entry_file = get("entryFile")
    if entry_file is not UNDEFINED and not (isinstance(entry_file, str) and entry_file):
        raise _fail(
            "config.entryFile", f"must be a non-empty string; got {_json_stringify(entry_file)}"
        )
    _check_enum("config.strictness", get("strictness"), STRICTNESS_LEVELS)


# --- variables payload (check 14) ---------------------------------------------------------


def _describe(value: Any) -> str:
    """`describeValue`, with Python type names standing in for JS constructor names."""
    if value is None or isinstance(value, list | tuple | bool | int | float | str):
        return js_type_of(value)
    return "object" if type(value) is dict else type(value).__name__


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _walk_variables(value: Any, path: str, ancestors: set[int]) -> None:
    """`walkVariables`: reject what `json.dumps` would refuse or Node would read differently."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if _has_lone_surrogate(value):
            # JS escapes a lone surrogate; Python cannot encode the JSON as UTF-8 at all.
            raise _fail(path, "strings must be valid Unicode; got a lone surrogate")
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(
                path,
                "non-finite numbers (NaN / Infinity) are not JSON-serializable; "
                f"got {js_number_string(value)}",
            )
        return
    if not isinstance(value, list | tuple | dict):
        raise _fail(
            path,
            f"non-plain objects are not supported (got {type(value).__name__}); "
            "use a plain {\u2026} object",
        )
    if id(value) in ancestors:
        raise _fail(path, "circular reference detected: JSON.stringify cannot serialize cycles")
    if len(ancestors) >= MAX_VARIABLES_DEPTH:  # the recursion stays far from Python's limit
        raise _fail(
            path,
            f"nests deeper than {MAX_VARIABLES_DEPTH} levels of objects and arrays; flatten it",
        )
    ancestors.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(path, f"object keys must be strings (got {type(key).__name__})")
            if _has_lone_surrogate(key):
                raise _fail(path, "object keys must be valid Unicode; got a lone surrogate")
            _walk_variables(item, f"{path}.{key}", ancestors)
    else:
        for index, item in enumerate(value):
            _walk_variables(item, f"{path}[{index}]", ancestors)
    ancestors.discard(id(value))


def validate_variables_payload(variables: Any) -> None:
    """Check 14 for Python values: a `dict` with `str` keys whose leaves are JSON values
    (`None`, bool, int, finite float, str, list/tuple, dict). Raises `InvalidConfigError`."""
    if not isinstance(variables, dict):
        raise _fail("config.variables", f"must be a plain JSON object (got {_describe(variables)})")
    _walk_variables(variables, "config.variables", set())


# --- the model ----------------------------------------------------------------------------

# Fields in the 0.8.170 CLI's `Config` key order, then the rest in the §4.1 table order.
_WIRE_HEAD = (
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
)
_WIRE_TAIL = (
    "crf",
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
)
_WIRE_ORDER = _WIRE_HEAD + _WIRE_TAIL
# Fields whose default is a value, not None: there None is the JS `null` and is rejected.
_NOT_NULLABLE = frozenset({"fps", "width", "height", "format", "runtimeCap"})
_INT_FIELDS = frozenset(
    {
        "fps",
        "width",
        "height",
        "crf",
        "chunkSize",
        "maxParallelChunks",
        "targetChunkFrames",
        "workerConcurrency",
        "workerTimeoutSeconds",
    }
)
_DEFAULTS: dict[str, Any] = {
    "fps": DEFAULT_FPS,
    "format": DEFAULT_FORMAT,
    "runtimeCap": DEFAULT_RUNTIME_CAP,
}


class RenderConfig(BaseModel):
    """`SerializableDistributedRenderConfig` without `variables` (those are per batch row).

    Accepts snake_case names or the Node camelCase keys. Unset optional fields are None and
    are omitted on the wire; passing None means "unset" wherever None is the default. For fps,
    width, height, format and runtime_cap None is the JS `null` and is rejected with the Node
    message. `model_copy(update=...)` skips validation; `to_wire` re-checks the document.
    """

    # Aliases are serialisation-only so type checkers see the snake_case `__init__`; camelCase
    # input is translated by the before-validator, which also rejects unknown keys.
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    fps: int = DEFAULT_FPS  # int, not Fps: callers pass ints; the check names the allowed set
    width: int
    height: int
    format: Format = DEFAULT_FORMAT
    codec: Codec | None = None
    quality: Quality | None = None
    crf: int | None = None
    bitrate: str | None = None
    video_frame_format: VideoFrameFormat | None = Field(
        default=None, serialization_alias="videoFrameFormat"
    )
    output_resolution: OutputResolution | None = Field(
        default=None, serialization_alias="outputResolution"
    )
    output_resolution_aspect_agnostic: bool | None = Field(
        default=None, serialization_alias="outputResolutionAspectAgnostic"
    )
    chunk_size: int | None = Field(default=None, serialization_alias="chunkSize")
    max_parallel_chunks: int | None = Field(default=None, serialization_alias="maxParallelChunks")
    target_chunk_frames: int | None = Field(default=None, serialization_alias="targetChunkFrames")
    worker_concurrency: int | None = Field(default=None, serialization_alias="workerConcurrency")
    worker_timeout_seconds: int | None = Field(
        default=None, serialization_alias="workerTimeoutSeconds"
    )
    runtime_cap: RuntimeCap = Field(default=DEFAULT_RUNTIME_CAP, serialization_alias="runtimeCap")
    hdr_mode: HdrMode | None = Field(default=None, serialization_alias="hdrMode")
    engine_config: dict[str, Any] | None = Field(default=None, serialization_alias="engineConfig")
    reject_on_system_fonts: bool | None = Field(
        default=None, serialization_alias="rejectOnSystemFonts"
    )
    fail_closed_font_fetch: bool | None = Field(
        default=None, serialization_alias="failClosedFontFetch"
    )
    cfr: bool | None = None
    entry_file: str | None = Field(default=None, serialization_alias="entryFile")
    strictness: Strictness | None = None

    @model_validator(mode="before")
    @classmethod
    def _validate_like_node(cls, data: Any) -> Any:
        """Run the Node checks on the camelCase document before pydantic sees it, so the first
        error is the one `validateDistributedRenderConfig` would raise, word for word."""
        if isinstance(data, RenderConfig):
            return data
        doc = _to_document(data)
        _check_document(doc)
        return {
            _SNAKE_BY_CAMEL[key]: int(value) if key in _INT_FIELDS else value
            for key, value in doc.items()
        }

    def to_wire(self, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `Config` document for the Step Functions input: CLI key order, unset fields
        omitted, ints as ints, then `variables` when given (validated as check 14)."""
        values = self.model_dump(by_alias=True)
        wire: dict[str, Any] = {}
        for key in _WIRE_ORDER:
            value = values.get(key)
            if value is not None:
                wire[key] = copy.deepcopy(value) if key == "engineConfig" else value
        if variables is not None:
            is_other_mapping = isinstance(variables, Mapping) and not isinstance(variables, dict)
            wire["variables"] = dict(variables) if is_other_mapping else variables
        _check_document(wire)  # also catches a `model_copy(update=...)` that skipped validation
        return wire


_CAMEL_BY_SNAKE: dict[str, str] = {
    name: field.serialization_alias or name for name, field in RenderConfig.model_fields.items()
}
_SNAKE_BY_CAMEL: dict[str, str] = {camel: snake for snake, camel in _CAMEL_BY_SNAKE.items()}
_KNOWN_CAMEL: frozenset[str] = frozenset(_CAMEL_BY_SNAKE.values())


def _to_document(data: Any) -> dict[str, Any]:
    """Normalise Python input (snake_case or camelCase keys) to the Node document: defaults
    for fps/format/runtimeCap as the CLI sends them, None on optional fields dropped."""
    if not isinstance(data, Mapping):
        raise _fail("config", "must be an object")
    doc: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in data.items():
        camel = _CAMEL_BY_SNAKE.get(key, key) if isinstance(key, str) else None
        if camel == "variables":
            raise _fail(
                "config.variables",
                "are set per batch row (each JSONL line's `variables`), not in the render config",
            )
        if camel is None or camel not in _KNOWN_CAMEL:
            names = _CAMEL_BY_SNAKE if "_" in str(key) else _KNOWN_CAMEL
            hint = difflib.get_close_matches(str(key), sorted(names), n=1)
            suffix = f"; did you mean {hint[0]}?" if hint else ""
            raise _fail(f"config.{key}", f"is not a known config field{suffix}")
        if camel in given_as:
            raise _fail(f"config.{camel}", f"is given twice (as {given_as[camel]} and {key})")
        given_as[camel] = key
        doc[camel] = value
    for key, default in _DEFAULTS.items():
        doc.setdefault(key, default)
    return {key: value for key, value in doc.items() if value is not None or key in _NOT_NULLABLE}


def validate_config(data: Mapping[str, Any]) -> None:
    """Validate a raw config mapping (snake_case or camelCase keys) exactly as constructing a
    `RenderConfig` does; raises `InvalidConfigError` with the Node-style message."""
    RenderConfig.model_validate(data)
