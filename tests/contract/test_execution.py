"""Execution input bytes, size limit and deterministic names (contract §3)."""

from __future__ import annotations

import json
import random
import re
import string

import pytest

from hyperframes_airflow.contract.execution import (
    MAX_INPUT_BYTES,
    ExecutionInputTooLarge,
    attempt_name,
    build_execution_input,
    check_input_size,
    default_output_key,
    encode_execution_input,
    execution_arn,
    execution_name,
    format_extension,
    input_digest,
    is_valid_execution_name,
    parse_s3_uri,
    render_digest,
    split_attempt,
)

WIRE_CONFIG = {
    "fps": 30,
    "width": 640,
    "height": 360,
    "format": "mp4",
    "workerConcurrency": 8,
    "runtimeCap": "lambda",
    "variables": {"title": "Hi #99"},
}
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _input(config: dict[str, object] | None = None, name: str = "hf-x") -> dict[str, object]:
    return build_execution_input(
        project_s3_uri="s3://hf-test-bucket/sites/9a86e90741176ce2/project.tar.gz",
        bucket="hf-test-bucket",
        execution_name=name,
        output_key="renders/r099.mp4",
        config=config if config is not None else WIRE_CONFIG,
    )


def test_format_extension_and_default_key() -> None:
    assert [format_extension(f) for f in ("mp4", "mov", "webm", "png-sequence")] == [
        ".mp4",
        ".mov",
        ".webm",
        "",
    ]
    assert default_output_key("hf-render-1", "mp4") == "renders/hf-render-1/output.mp4"
    assert default_output_key("hf-render-1", "png-sequence") == "renders/hf-render-1/output"
    with pytest.raises(ValueError, match="gif"):
        format_extension("gif")


def test_input_matches_the_wire_bytes() -> None:
    doc = _input(name="hf-render-1")
    assert list(doc) == [
        "ProjectS3Uri",
        "PlanOutputS3Prefix",
        "OutputS3Uri",
        "Config",
        "PlanProtocol",
    ]
    assert encode_execution_input(doc) == (
        '{"ProjectS3Uri":"s3://hf-test-bucket/sites/9a86e90741176ce2/project.tar.gz",'
        '"PlanOutputS3Prefix":"s3://hf-test-bucket/renders/hf-render-1/",'
        '"OutputS3Uri":"s3://hf-test-bucket/renders/r099.mp4",'
        '"Config":{"fps":30,"width":640,"height":360,"format":"mp4","workerConcurrency":8,'
        '"runtimeCap":"lambda","variables":{"title":"Hi #99"}},'
        '"PlanProtocol":"v2"}'
    )


def test_encoding_is_js_like() -> None:
    doc = {"a": "Zé ✓ 😀", "n": 30.0, "f": 0.5, "big": 1e20, "nested": [{"x": 2.0}], "b": True}
    text = encode_execution_input(doc)
    assert (
        text
        == '{"a":"Zé ✓ 😀","n":30,"f":0.5,"big":100000000000000000000,"nested":[{"x":2}],"b":true}'
    )
    assert json.loads(text)["a"] == "Zé ✓ 😀"
    with pytest.raises(ValueError, match="surrogate"):
        encode_execution_input({"a": "\ud800"})
    with pytest.raises(ValueError, match="NaN"):
        encode_execution_input({"a": float("nan")})


def _padded(target: int) -> str:
    """An encoded input of exactly `target` UTF-8 bytes, mostly 2- and 4-byte characters."""
    base = len(encode_execution_input(_input({**WIRE_CONFIG, "variables": {"t": ""}})).encode())
    emoji, rest = divmod(target - base, 4)
    pad = "😀" * emoji + ["", "a", "é", "éa"][rest]
    encoded = encode_execution_input(_input({**WIRE_CONFIG, "variables": {"t": pad}}))
    assert len(encoded.encode()) == target
    return encoded


def test_size_limit_is_inclusive() -> None:
    exact = _padded(MAX_INPUT_BYTES)
    assert len(exact) < MAX_INPUT_BYTES  # characters, not bytes, are counted by len()
    check_input_size(exact)
    over = _padded(MAX_INPUT_BYTES + 1)
    with pytest.raises(ExecutionInputTooLarge) as info:
        check_input_size(over)
    assert info.value.size == 262_145
    assert str(info.value) == (
        "[validateConfig] config: Step Functions execution input is 262145 bytes, which exceeds "
        "the 262144-byte (256 KiB) limit for Standard workflows. Variables are for typed data "
        "(strings, numbers, structured records); media assets (images, audio, video) should be "
        "passed as URL references the composition resolves at render time, not inlined as "
        "base64. See https://hyperframes.heygen.com/deploy/templates-on-lambda"
        "#working-with-large-variables for the URL-your-assets convention."
    )
    assert isinstance(info.value, ValueError)


def test_digests() -> None:
    encoded = encode_execution_input(_input())
    assert re.fullmatch(r"[0-9a-f]{64}", input_digest(encoded))
    assert input_digest(encoded) == input_digest(encode_execution_input(_input()))
    kwargs = dict(project_s3_uri="s3://b/sites/x/project.tar.gz", bucket="b", output_key="o.mp4")
    d1 = render_digest(config=WIRE_CONFIG, **kwargs)
    d2 = render_digest(config={**WIRE_CONFIG, "variables": {"title": "other"}}, **kwargs)
    assert d1 != d2 and d1 == render_digest(config=dict(WIRE_CONFIG), **kwargs)


RUN_IDS = [
    "manual__2026-11-29T09:34:02.123456+00:00",
    "scheduled__2026-11-29T00:00:00+00:00",
    "backfill__2026-01-01T00:00:00+00:00",
    "asset_triggered__2026-11-29T09:34:02+00:00",
    "",
    "weird run / id with spaces & ü 😀",
]


def test_execution_name_shape() -> None:
    name = execution_name(dag_id="weekly_digest", run_id=RUN_IDS[0], row_line=12, digest="ab" * 32)
    assert re.fullmatch(r"hf-weekly_digest-[0-9a-f]{10}-l12-abababab", name)
    again = execution_name(dag_id="weekly_digest", run_id=RUN_IDS[0], row_line=12, digest="ab" * 32)
    assert again == name
    assert (
        execution_name(
            dag_id="weekly_digest", run_id=RUN_IDS[0], row_line=12, digest="ab" * 32, attempt=3
        )
        == name + "-a3"
    )


def test_execution_names_property() -> None:
    rng = random.Random(1234)
    alphabet = string.printable + "éü😀:+/ "
    seen: dict[str, tuple[str, str, int, str, int]] = {}
    dag_ids = ["d", "a.b", "a_b", "x" * 250, "dag.with.dots-and-dashes_" * 8, "ü😀", "___"]
    dag_ids += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120))) for _ in range(40)
    ]
    run_ids = RUN_IDS + ["".join(rng.choice(alphabet) for _ in range(60)) for _ in range(10)]
    for dag_id in dag_ids:
        for run_id in run_ids:
            for line in (1, 7, 123456789):
                for attempt in (1, 2, 150):
                    digest = f"{rng.getrandbits(64):016x}"
                    key = (dag_id, run_id, line, digest, attempt)
                    name = execution_name(
                        dag_id=dag_id, run_id=run_id, row_line=line, digest=digest, attempt=attempt
                    )
                    assert NAME_RE.fullmatch(name), (key, name)
                    assert is_valid_execution_name(name)
                    assert name not in seen, (key, seen.get(name))
                    seen[name] = key
                    assert name == execution_name(
                        dag_id=dag_id, run_id=run_id, row_line=line, digest=digest, attempt=attempt
                    )
                    if attempt == 1:
                        for n in (2, 42, 99):
                            assert attempt_name(name, n) == execution_name(
                                dag_id=dag_id,
                                run_id=run_id,
                                row_line=line,
                                digest=digest,
                                attempt=n,
                            )


def test_names_differ_for_dag_ids_that_sanitise_alike() -> None:
    def name(dag_id: str) -> str:
        return execution_name(dag_id=dag_id, run_id=RUN_IDS[0], row_line=1, digest="0" * 16)

    a, b = name("a.b"), name("a_b")
    assert a != b and a.startswith("hf-a_b-") and b.startswith("hf-a_b-")
    long_a, long_b = name("x" * 100 + "a"), name("x" * 100 + "b")
    assert long_a != long_b and len(long_a) <= 80


def test_execution_name_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="digest"):
        execution_name(dag_id="d", run_id="r", row_line=1, digest="xyz")
    with pytest.raises(ValueError, match="attempt"):
        execution_name(dag_id="d", run_id="r", row_line=1, digest="0" * 8, attempt=0)
    with pytest.raises(ValueError, match="row_line"):
        execution_name(dag_id="d", run_id="r", row_line=-1, digest="0" * 8)


def test_attempt_name() -> None:
    assert attempt_name("alice-render", 1) == "alice-render"
    assert attempt_name("alice-render", 2) == "alice-render-a2"
    long_a = "n" * 79 + "a"
    long_b = "n" * 79 + "b"
    for base in (long_a, long_b):
        for n in (2, 10, 1000):
            name = attempt_name(base, n)
            assert len(name) <= 80 and name.endswith(f"-a{n}") and is_valid_execution_name(name)
    assert attempt_name(long_a, 2) != attempt_name(long_b, 2)
    assert len(attempt_name("m" * 77, 2)) == 80


def test_split_attempt_inverts_attempt_name_for_generated_names() -> None:
    bases = {
        execution_name(dag_id="d", run_id="r", row_line=line, digest=digest): line
        for line, digest in ((1, "a0000012" * 2), (2, "a1234567" * 2), (3, "0123abcd" * 2))
    }
    for base in bases:
        for attempt in (1, 2, 12, 99, 100):
            assert split_attempt(attempt_name(base, attempt), bases) == (base, attempt)
    # Digests that look like attempt suffixes (`-a0000012`) are still attempt 1 of themselves.
    assert all(split_attempt(base, bases) == (base, 1) for base in bases)
    assert split_attempt("hf-d-other-l1-00000000", bases) is None
    assert split_attempt(next(iter(bases)) + "-a0", bases) is None
    assert split_attempt(next(iter(bases)) + "-a07", bases) is None


def test_is_valid_execution_name() -> None:
    assert is_valid_execution_name("hf-render-0b8f6e3c-1d6a-4f5e-9b2a-6c1f2e3d4a5b")
    for bad in ("", "x" * 81, "a:b", "a b", "a/b", "é", "a\n", "a.b"):
        assert not is_valid_execution_name(bad), bad
    assert is_valid_execution_name("x" * 80)


def test_execution_arn() -> None:
    sm = "arn:aws:states:us-east-1:123456789012:stateMachine:hyperframes-render"
    assert execution_arn(sm, "hf-1") == (
        "arn:aws:states:us-east-1:123456789012:execution:hyperframes-render:hf-1"
    )
    arn = "arn:aws:states:us-east-1:1:execution:other:x"
    assert execution_arn(sm, arn) == arn


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket/renders/a b/out.mp4") == ("bucket", "renders/a b/out.mp4")
    assert parse_s3_uri("s3://bucket/renders/x/") == ("bucket", "renders/x/")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    for bad in ("https://bucket/key", "s3:///key", "bucket/key"):
        with pytest.raises(ValueError):
            parse_s3_uri(bad)


def test_deep_documents_fail_with_a_value_error_not_a_recursion_error() -> None:
    deep: list[object] = [1.5]
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        encode_execution_input({"Config": {"variables": {"x": deep}}})
    # Where a NaN is is found without recursing either (a few hundred levels, as a batch allows).
    deep_nan: list[object] = [float("nan")]
    for _ in range(300):
        deep_nan = [deep_nan]
    with pytest.raises(ValueError, match=r"^input\.v(\[0\]){301}: non-finite"):
        encode_execution_input({"v": deep_nan})
