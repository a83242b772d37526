"""The fast per-row encoder is byte-for-byte the reference encoder (and the Node SDK's bytes)."""

from __future__ import annotations

from typing import Any

import pytest

from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.execution import (
    ExecutionInputTooLarge,
    build_execution_input,
    encode_execution_input,
    render_digest,
)
from hyperframes_airflow.contract.row_input import RowInputs
from hyperframes_airflow.contract.site import site_key

CASES: list[dict[str, Any]] = [
    {},
    {"title": "Hi"},
    {"title": 'Hi Ädä ✓ "quoted" \\ \n', "n": 2.0, "x": 2.5, "big": 1e21, "small": 1e-7},
    {"nested": {"list": [1, 2.0, {"deep": [3.0, None, True, False]}]}, "empty": {}, "none": None},
    {"emoji": "🎬", "rtl": "שלום", "zero": 0, "neg": -1.0},
]
CONFIGS = [
    RenderConfig(width=640, height=360, fps=30),
    RenderConfig(width=1920, height=1080, fps=60, format="mov", quality="high", chunk_size=40),
]


@pytest.mark.parametrize("variables", CASES)
@pytest.mark.parametrize("config", CONFIGS)
def test_the_fast_path_is_the_reference_bytes(
    variables: dict[str, Any], config: RenderConfig
) -> None:
    bucket, site, key, name = "hf-renders", "0123456789abcdef", "out/ü a.mp4", "hf-x-l3-abcdef12"
    base = config.to_wire()
    wire = {**base, "variables": variables} if variables else dict(base)
    reference = encode_execution_input(
        build_execution_input(
            project_s3_uri=f"s3://{bucket}/{site_key(site)}",
            bucket=bucket,
            execution_name=name,
            output_key=key,
            config=wire,
        )
    )
    inputs = RowInputs(base_wire=base, bucket=bucket, site_id=site)
    vjson = inputs.variables_json(variables)
    assert inputs.encoded(name=name, output_key=key, variables_json=vjson) == reference
    assert inputs.digest(output_key=key, variables_json=vjson) == render_digest(
        project_s3_uri=f"s3://{bucket}/{site_key(site)}", bucket=bucket, output_key=key, config=wire
    )
    assert inputs.size(reference) == len(reference.encode("utf-8"))


def test_sizes_and_bad_values_fail_as_the_reference_does() -> None:
    inputs = RowInputs(base_wire=CONFIGS[0].to_wire(), bucket="b", site_id="s")
    big = inputs.encoded(
        name="n", output_key="k.mp4", variables_json=inputs.variables_json({"x": "y" * 262_144})
    )
    with pytest.raises(ExecutionInputTooLarge, match="exceeds the 262144-byte"):
        inputs.size(big)
    with pytest.raises(ValueError, match="non-finite"):
        inputs.variables_json({"a": {"b": float("nan")}})
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        inputs.size(
            inputs.encoded(
                name="n", output_key="k", variables_json=inputs.variables_json({"s": "\ud800"})
            )
        )
