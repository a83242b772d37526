"""Chunk plan port and the calibrated pre-flight estimate (contract §5.5, §10)."""

from __future__ import annotations

import math

import pytest

from hyperframes_airflow.contract.estimate import (
    DEFAULT_ASSEMBLE_SECONDS,
    DEFAULT_CHUNK_OVERHEAD_SECONDS,
    DEFAULT_PLAN_SECONDS,
    chunk_plan,
    estimate_batch,
)
from hyperframes_airflow.contract.progress import LAMBDA_USD_PER_GB_SECOND, SFN_USD_PER_TRANSITION


def test_chunk_plan_worked_examples() -> None:
    assert chunk_plan(1800) == (16, 113)
    assert chunk_plan(1800, chunk_size=240) == (8, 240)


@pytest.mark.parametrize(
    ("total", "kwargs", "expected"),
    [
        (1, {}, (1, 10)),  # MIN_CHUNK_SIZE applies
        (60, {}, (6, 10)),
        (160, {}, (16, 10)),
        (161, {}, (15, 11)),  # 161/11 needs only 15 chunks
        (480, {"chunk_size": 160}, (3, 160)),
        (1800, {"max_parallel_chunks": 4}, (4, 450)),
        (1800, {"chunk_size": 10, "max_parallel_chunks": 4}, (4, 450)),  # count capped, eff grows
        (1800, {"target_chunk_frames": 600}, (3, 600)),
        (1800, {"target_chunk_frames": 600, "chunk_size": 100}, (16, 113)),  # chunkSize wins
        (100, {"chunk_size": 3600}, (1, 3600)),
    ],
)
def test_chunk_plan_cases(total: int, kwargs: dict[str, int], expected: tuple[int, int]) -> None:
    assert chunk_plan(total, **kwargs) == expected


def test_chunk_plan_covers_every_frame() -> None:
    for total in range(1, 4000, 37):
        for kwargs in (
            {},
            {"chunk_size": 240},
            {"max_parallel_chunks": 40},
            {"target_chunk_frames": 90},
        ):
            count, per = chunk_plan(total, **kwargs)
            assert 1 <= count <= kwargs.get("max_parallel_chunks", 16)
            assert (count - 1) * per < total <= count * per


def test_chunk_plan_rejects_nonsense() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError):
            chunk_plan(bad)
    with pytest.raises(ValueError):
        chunk_plan(100, chunk_size=0)


def test_estimate_arithmetic() -> None:
    est = estimate_batch(rows=3, total_frames=1800, width=1920, height=1080, chunk_size=240)
    r = est.per_render
    assert (r.chunks, r.frames_per_chunk, r.invocations, r.transitions) == (8, 240, 10, 15)
    spf = 0.11 * 1920 * 1080 / 1e6
    seconds = (
        DEFAULT_PLAN_SECONDS
        + 8 * DEFAULT_CHUNK_OVERHEAD_SECONDS
        + 1800 * spf
        + DEFAULT_ASSEMBLE_SECONDS
    )
    assert r.lambda_seconds == pytest.approx(seconds)
    assert r.max_chunk_seconds == pytest.approx(DEFAULT_CHUNK_OVERHEAD_SECONDS + 240 * spf)
    assert r.lambda_usd == pytest.approx(10 * seconds * LAMBDA_USD_PER_GB_SECOND)
    assert r.step_functions_usd == pytest.approx(15 * SFN_USD_PER_TRANSITION)
    assert r.total_usd == pytest.approx(r.lambda_usd + r.step_functions_usd)
    assert est.rows == 3 and est.invocations == 30 and est.transitions == 45
    assert est.total_usd == pytest.approx(3 * r.total_usd)
    assert est.display_cost == f"${math.floor(est.total_usd * 1e4 + 0.5) / 1e4:.4f}"
    assert est.warnings == []
    assert len(est.assumptions) >= 5 and any("0.11" in a for a in est.assumptions)
    dumped = est.model_dump(by_alias=True)
    assert list(dumped)[:3] == ["rows", "memoryMb", "perRender"]
    assert dumped["perRender"]["framesPerChunk"] == 240


def test_memory_scales_lambda_usd_only() -> None:
    big = estimate_batch(rows=1, total_frames=900, width=1280, height=720)
    small = estimate_batch(rows=1, total_frames=900, width=1280, height=720, memory_mb=5120)
    assert small.lambda_usd == pytest.approx(big.lambda_usd / 2)
    assert small.step_functions_usd == big.step_functions_usd


def _ratio(estimated: float, published: float) -> float:
    return estimated / published


def test_defaults_land_near_the_published_examples() -> None:
    # examples/aws-lambda/README.md: 60 s 1080p30, chunkSize 240 (8 chunks), ~$0.04 Lambda, 10 GB.
    readme = estimate_batch(rows=1, total_frames=1800, width=1920, height=1080, chunk_size=240)
    assert readme.per_render.chunks == 8
    assert 0.5 <= _ratio(readme.lambda_usd, 0.04) <= 2.0
    assert readme.step_functions_usd == pytest.approx(0.000375)  # "~$0.001 in Step Functions"
    # docs/deploy/aws-lambda.mdx: 480 frames, 5 Lambdas (3 chunks), Lambda $0.0210.
    docs = estimate_batch(rows=1, total_frames=480, width=1920, height=1080, chunk_size=160)
    assert docs.per_render.invocations == 5
    assert 0.5 <= _ratio(docs.lambda_usd, 0.0210) <= 2.0


def test_warnings_for_long_chunks_and_waves() -> None:
    est = estimate_batch(rows=1, total_frames=3600, width=3840, height=2160, chunk_size=3600)
    assert any("Lambda timeout" in w for w in est.warnings)
    many = estimate_batch(
        rows=1, total_frames=10000, width=640, height=360, max_parallel_chunks=100
    )
    assert many.per_render.chunks == 100
    assert any("waves" in w for w in many.warnings)
    assert (
        many.per_render.wall_seconds > DEFAULT_PLAN_SECONDS + 2 * many.per_render.max_chunk_seconds
    )


def test_zero_rows() -> None:
    est = estimate_batch(rows=0, total_frames=300, width=640, height=360)
    assert est.total_usd == 0 and est.display_cost == "$0.0000"
