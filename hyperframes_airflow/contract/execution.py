"""The Step Functions execution a render is: its input document, its name, its ARN.

The input is byte-for-byte what the Node SDK's `renderToLambda` sends (contract §3.1), so a stack
deployed with `hyperframes lambda deploy` needs nothing extra. Names are deterministic (§3.2,
DESIGN §4 "Exactly one render per row"): a retried task computes the same name, so
StartExecution either returns the running execution or reports `ExecutionAlreadyExists`
instead of starting a duplicate render.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from hyperframes_airflow.contract.formats import format_extension
from hyperframes_airflow.contract.json_values import MAX_VARIABLES_DEPTH

__all__ = [
    "MAX_EXECUTION_NAME_LENGTH",
    "MAX_INPUT_BYTES",
    "ExecutionInputTooLarge",
    "attempt_name",
    "build_execution_input",
    "check_input_size",
    "default_output_key",
    "encode_execution_input",
    "execution_arn",
    "execution_name",
    "execution_name_problem",
    "format_extension",
    "input_digest",
    "is_valid_execution_name",
    "parse_s3_uri",
    "render_digest",
    "split_attempt",
]

#: `MAX_STEP_FUNCTIONS_INPUT_BYTES` (256 KiB); the Node check is a strict `>`, so this size passes.
MAX_INPUT_BYTES = 262_144
#: Step Functions execution names are 1-80 characters.
MAX_EXECUTION_NAME_LENGTH = 80

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,80}", re.ASCII)
_NAME_BAD_CHAR_RE = re.compile(r"[^A-Za-z0-9_-]", re.ASCII)
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_-]+", re.ASCII)
_HEX_RE = re.compile(r"[0-9a-f]{8,}", re.ASCII)
# JS prints integral doubles below 1e21 without an exponent, exactly like a Python int.
_JS_PLAIN_INTEGER_LIMIT = 1e21


def default_output_key(execution_name: str, format: str) -> str:
    """The key the SDK writes to when no `outputKey` is given (expires after 7 days, §4.6)."""
    return f"renders/{execution_name}/output{format_extension(format)}"


def build_execution_input(
    *,
    project_s3_uri: str,
    bucket: str,
    execution_name: str,
    output_key: str,
    config: Mapping[str, Any],
    plan_protocol: str = "v2",
) -> dict[str, Any]:
    """The StartExecution input, keys in the SDK's order (the order is part of the bytes).

    `config` is the already-serialised wire Config (optional fields omitted, not None).
    """
    return {
        "ProjectS3Uri": project_s3_uri,
        "PlanOutputS3Prefix": f"s3://{bucket}/renders/{execution_name}/",
        "OutputS3Uri": f"s3://{bucket}/{output_key}",
        "Config": dict(config),
        "PlanProtocol": plan_protocol,
    }


class _NonFinite(ValueError):
    pass


def js_numbers(value: Any) -> Any:
    """Copy `value` with integral floats as ints, so `30.0` is written `30` as JS would."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # the common leaves, fast
        return value
    if kind is dict:
        return {k: js_numbers(v) for k, v in value.items()}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NonFinite
        if value.is_integer() and abs(value) < _JS_PLAIN_INTEGER_LIMIT:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {k: js_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [js_numbers(v) for v in value]
    return value


def _non_finite_path(value: Any, path: str) -> str | None:
    """Where the first NaN/Infinity is (only walked when there is one: paths cost time).

    Iterative, in document order: the depth of a document is not ours to choose.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, Mapping):
            children = [(v, f"{where}.{k}") for k, v in item.items()]
        elif isinstance(item, list | tuple):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(item)]
        else:
            continue
        stack.extend(reversed(children))
    return None


def encode_execution_input(doc: Mapping[str, Any]) -> str:
    """Serialise like `JSON.stringify`: compact, UTF-8 (not ASCII-escaped), integral floats as ints.

    Lone surrogates are rejected: JS would escape them, Python cannot encode them, and either way
    they are not text. Non-integral floats in exponent range (e.g. `1e-05`) may differ from JS by
    a byte or two in spelling; the value parses identically.
    """
    try:
        normalised = js_numbers(doc)
        text = json.dumps(normalised, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except _NonFinite:
        path = _non_finite_path(doc, "input")
        raise ValueError(
            f"{path}: non-finite numbers (NaN / Infinity) are not JSON-serializable"
        ) from None
    except RecursionError:
        # Parsed batch rows never get here (variables nest at most 64 levels); other callers
        # get a clear error instead of a crash.
        raise ValueError(
            "execution input is nested too deeply to serialise; variables may nest at most "
            f"{MAX_VARIABLES_DEPTH} levels"
        ) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            "execution input contains a lone UTF-16 surrogate, which is not valid text"
        ) from exc
    return text


class ExecutionInputTooLarge(ValueError):
    """The encoded input exceeds the Standard workflow limit; carries the byte count in `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(
            f"[validateConfig] config: Step Functions execution input is {size} bytes, which "
            f"exceeds the {MAX_INPUT_BYTES}-byte (256 KiB) limit for Standard workflows. "
            "Variables are for typed data (strings, numbers, structured records); media assets "
            "(images, audio, video) should be passed as URL references the composition resolves "
            "at render time, not inlined as base64. See "
            "https://hyperframes.heygen.com/deploy/templates-on-lambda#working-with-large-variables"
            " for the URL-your-assets convention."
        )


def check_input_size(encoded: str) -> None:
    """Raise `ExecutionInputTooLarge` (Node's verbatim message) above 262144 UTF-8 bytes."""
    size = len(encoded.encode("utf-8"))
    if size > MAX_INPUT_BYTES:
        raise ExecutionInputTooLarge(size)


def input_digest(encoded: str) -> str:
    """sha256 hex of the encoded input: identifies "the same render" across retries."""
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def render_digest(
    *,
    project_s3_uri: str,
    bucket: str,
    output_key: str,
    config: Mapping[str, Any],
    plan_protocol: str = "v2",
) -> str:
    """Digest of everything in a render's input except its name.

    The real input embeds the execution name (`PlanOutputS3Prefix`), so it cannot feed the name
    it contains. This digests the same document with that field left out; use it as `digest`
    for `execution_name`.
    """
    doc = build_execution_input(
        project_s3_uri=project_s3_uri,
        bucket=bucket,
        execution_name="",
        output_key=output_key,
        config=config,
        plan_protocol=plan_protocol,
    )
    del doc["PlanOutputS3Prefix"]
    return input_digest(encode_execution_input(doc))


def is_valid_execution_name(name: str) -> bool:
    """1-80 chars of `[A-Za-z0-9_-]`: valid for Step Functions, CloudWatch and S3 keys."""
    return _NAME_RE.fullmatch(name) is not None


def execution_name_problem(name: str) -> str | None:
    """Why `name` breaks the rule of `is_valid_execution_name` (for a message), or None."""
    if is_valid_execution_name(name):
        return None
    rule = (
        f'must be 1-{MAX_EXECUTION_NAME_LENGTH} characters of A-Z, a-z, 0-9, "_" and "-" '
        "(AWS Step Functions limits names to 80 characters, and only this set works with "
        "CloudWatch logs and metrics)"
    )
    if not name:
        return f"{rule}; got an empty string"
    parts = []
    if len(name) > MAX_EXECUTION_NAME_LENGTH:
        parts.append(f"{len(name)} characters")
    bad = sorted(set(_NAME_BAD_CHAR_RE.findall(name)))
    if bad:
        shown = ", ".join(json.dumps(c, ensure_ascii=False) for c in bad[:10])
        parts.append(f"disallowed character(s) {shown}")
    return f"{rule}; got {' and '.join(parts)}"


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _attempt_suffix(attempt: int) -> str:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be a positive integer; got {attempt!r}")
    return "" if attempt == 1 else f"-a{attempt}"


def execution_name(
    *, dag_id: str, run_id: str, row_line: int, digest: str, attempt: int = 1
) -> str:
    """Deterministic name `hf-<dag>-<run10>-l<line>-<digest8>[-a<attempt>]`, at most 80 chars.

    `<dag>` is the sanitised, truncated dag id (for humans); `<run10>` is 10 hex of
    sha256(dag_id NUL run_id), which keeps names of different runs apart even when dag ids
    sanitise or truncate alike. `<digest8>` comes from `render_digest`, so changing a row's input
    changes its name. Room for `-a99` is always reserved, hence
    `attempt_name(execution_name(..., attempt=1), n) == execution_name(..., attempt=n)` for n < 100.
    """
    if isinstance(row_line, bool) or not isinstance(row_line, int) or row_line < 0:
        raise ValueError(f"row_line must be a non-negative integer; got {row_line!r}")
    digest8 = digest.lower()[:8]
    if _HEX_RE.fullmatch(digest.lower()) is None:
        raise ValueError(f"digest must be at least 8 hex characters; got {digest!r}")
    suffix = _attempt_suffix(attempt)
    safe_dag, run_hash = _run_parts(dag_id, run_id)
    tail = f"-{run_hash}-l{row_line}-{digest8}"
    budget = MAX_EXECUTION_NAME_LENGTH - len("hf-") - len(tail) - max(len(suffix), len("-a99"))
    dag = safe_dag[: max(budget, 0)].rstrip("_-")
    name = f"hf-{dag}{tail}" if dag else f"hf{tail}"
    name += suffix
    if not is_valid_execution_name(name):
        raise ValueError(f"cannot build an execution name within 80 characters: {name!r}")
    return name


@functools.lru_cache(maxsize=64)
def _run_parts(dag_id: str, run_id: str) -> tuple[str, str]:
    """The sanitised dag id and the run hash: the same for every row of a run (computed once)."""
    return _UNSAFE_RE.sub("_", dag_id).strip("_-"), _short_hash(f"{dag_id}\0{run_id}", 10)


def attempt_name(base_name: str, attempt: int) -> str:
    """Name for the n-th start of a row whose first name is `base_name` (e.g. a JSONL name).

    Attempt 1 keeps the name. Later attempts append `-a<n>`; when that would pass 80 chars the base
    is cut and 8 hex of its sha256 inserted, so two long names sharing a prefix stay distinct.
    """
    suffix = _attempt_suffix(attempt)
    if not suffix:
        return base_name
    if len(base_name) + len(suffix) <= MAX_EXECUTION_NAME_LENGTH:
        return base_name + suffix
    keep = MAX_EXECUTION_NAME_LENGTH - len(suffix) - 9
    return f"{base_name[:keep]}-{_short_hash(base_name, 8)}{suffix}"


_ATTEMPT_SUFFIX_RE = re.compile(r"^(.+)-a([1-9][0-9]{0,2})$")


def split_attempt(name: str, bases: Mapping[str, Any]) -> tuple[str, int] | None:
    """Which of `bases` the execution `name` is an attempt of, and which attempt: the inverse
    of `attempt_name` for names it did not have to cut (deterministic names never are)."""
    if name in bases:
        return name, 1
    match = _ATTEMPT_SUFFIX_RE.match(name)
    if match is None or match.group(1) not in bases:
        return None
    base, attempt = match.group(1), int(match.group(2))
    return (base, attempt) if attempt_name(base, attempt) == name else None


def execution_arn(state_machine_arn: str, name: str) -> str:
    """Execution ARN from a name, like the CLI's `executionArnFromName`; ARNs pass through."""
    if name.startswith("arn:"):
        return name
    return state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split `s3://bucket/key` into `(bucket, key)`; the key may be empty (a bucket or prefix)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"S3 URI has no bucket: {uri!r}")
    return bucket, key
