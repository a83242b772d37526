"""Chunk plan port and the calibrated pre-flight estimate (contract §5.5, §10)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from hyperframes_airflow.contract.config import OUTPUT_RESOLUTIONS, RenderConfig
from hyperframes_airflow.contract.estimate import (
    CANVAS_DIMENSIONS,
    DEFAULT_ASSEMBLE_SECONDS,
    DEFAULT_CHUNK_OVERHEAD_SECONDS,
    DEFAULT_PLAN_SECONDS,
    BatchEstimate,
    RenderEstimate,
    chunk_plan,
    cost_gate,
    estimate_batch,
    render_canvas,
)
from hyperframes_airflow.contract.progress import LAMBDA_USD_PER_GB_SECOND, SFN_USD_PER_TRANSITION
from tests.conftest import REPO
from tests.requirements import need


def _per_render(est: BatchEstimate) -> RenderEstimate:
    assert est.known and est.per_render is not None, est.reason
    return est.per_render


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
    r = _per_render(est)
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
    assert est.total_usd is not None and est.total_usd == pytest.approx(3 * r.total_usd)
    assert est.display_cost == f"${math.floor(est.total_usd * 1e4 + 0.5) / 1e4:.4f}"
    assert est.warnings == []
    assert len(est.assumptions) >= 5 and any("0.11" in a for a in est.assumptions)
    dumped = est.model_dump(by_alias=True)
    assert list(dumped)[:5] == ["known", "reason", "rows", "memoryMb", "canvas"]
    assert dumped["known"] is True and dumped["reason"] is None
    assert dumped["perRender"]["framesPerChunk"] == 240


def test_memory_scales_lambda_usd_only() -> None:
    big = estimate_batch(rows=1, total_frames=900, width=1280, height=720)
    small = estimate_batch(rows=1, total_frames=900, width=1280, height=720, memory_mb=5120)
    assert big.lambda_usd is not None
    assert small.lambda_usd == pytest.approx(big.lambda_usd / 2)
    assert small.step_functions_usd == big.step_functions_usd


def _ratio(estimated: float, published: float) -> float:
    return estimated / published


def test_defaults_land_near_the_published_examples() -> None:
    # examples/aws-lambda/README.md: 60 s 1080p30, chunkSize 240 (8 chunks), ~$0.04 Lambda, 10 GB.
    readme = estimate_batch(rows=1, total_frames=1800, width=1920, height=1080, chunk_size=240)
    assert _per_render(readme).chunks == 8
    assert readme.lambda_usd is not None and 0.5 <= _ratio(readme.lambda_usd, 0.04) <= 2.0
    assert readme.step_functions_usd == pytest.approx(0.000375)  # "~$0.001 in Step Functions"
    # docs/deploy/aws-lambda.mdx: 480 frames, 5 Lambdas (3 chunks), Lambda $0.0210.
    docs = estimate_batch(rows=1, total_frames=480, width=1920, height=1080, chunk_size=160)
    assert _per_render(docs).invocations == 5
    assert docs.lambda_usd is not None and 0.5 <= _ratio(docs.lambda_usd, 0.0210) <= 2.0


def test_warnings_for_long_chunks_and_waves() -> None:
    est = estimate_batch(rows=1, total_frames=3600, width=3840, height=2160, chunk_size=3600)
    assert any("Lambda timeout" in w for w in est.warnings)
    many = estimate_batch(
        rows=1, total_frames=10000, width=640, height=360, max_parallel_chunks=100
    )
    per = _per_render(many)
    assert per.chunks == 100
    assert any("waves" in w for w in many.warnings)
    assert per.wall_seconds > DEFAULT_PLAN_SECONDS + 2 * per.max_chunk_seconds


def test_zero_rows() -> None:
    est = estimate_batch(rows=0, total_frames=300, width=640, height=360)
    assert est.total_usd == 0 and est.display_cost == "$0.0000"


# --- duration: known or not ---------------------------------------------------------------


def test_a_duration_is_turned_into_frames_at_the_config_fps() -> None:
    config = RenderConfig(width=1280, height=720, fps=24)
    est = estimate_batch(rows=2, duration_s=10.01, config=config)
    r = _per_render(est)
    assert r.total_frames == 241  # frame_count: 240.24 -> ceil
    assert (r.width, r.height) == (1280, 720)
    assert est.fps == 24 and est.duration_s == 10.01
    assert any("241 frames" in a and "10.01 s at 24 fps" in a for a in est.assumptions)
    same = estimate_batch(rows=2, total_frames=241, width=1280, height=720)
    assert est.total_usd == pytest.approx(same.total_usd)


def test_an_unknown_duration_is_an_unknown_cost_with_its_reason() -> None:
    est = estimate_batch(
        rows=5,
        duration_s=None,
        duration_unknown_reason="the root composition declares no data-duration and ...",
        config=RenderConfig(width=640, height=360),
    )
    assert est.known is False
    assert est.reason == "the root composition declares no data-duration and ..."
    assert est.per_render is None and est.total_usd is None and est.display_cost is None
    assert est.rows == 5 and (est.canvas.width, est.canvas.height) == (640, 360)
    dumped = est.model_dump(by_alias=True)
    assert dumped["known"] is False and dumped["totalUsd"] is None
    default = estimate_batch(rows=1, config=RenderConfig(width=640, height=360))
    assert default.known is False and default.reason and "duration" in default.reason


def test_the_composition_reason_reaches_the_estimate(tmp_path: Path) -> None:
    from hyperframes_airflow.contract.composition import read_composition

    (tmp_path / "index.html").write_text(
        '<html><body><div data-composition-id="m"><video src="a.mp4" data-start="0">'
        "</video></div></body></html>"
    )
    comp = read_composition(tmp_path)
    est = estimate_batch(
        rows=1,
        duration_s=comp.duration_s,
        duration_unknown_reason=comp.duration_unknown_reason,
        config=RenderConfig(width=640, height=360),
    )
    assert est.known is False and est.reason == comp.duration_unknown_reason
    template = read_composition(REPO / "examples" / "templates" / "welcome")
    known = estimate_batch(
        rows=1,
        duration_s=template.duration_s,
        duration_unknown_reason=template.duration_unknown_reason,
        config=RenderConfig(width=640, height=360),
    )
    assert _per_render(known).total_frames == 60


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration_s": 2.0, "total_frames": 60, "width": 640, "height": 360, "fps": 30},
        {"duration_s": 2.0, "width": 640, "height": 360},  # no fps
        {"duration_s": 0.0, "width": 640, "height": 360, "fps": 30},
        {"duration_s": math.inf, "width": 640, "height": 360, "fps": 30},
        {"total_frames": 60, "width": 640},  # no height
        {"total_frames": 60, "config": RenderConfig(width=640, height=360), "width": 640},
        {"total_frames": 60, "config": RenderConfig(width=640, height=360), "chunk_size": 10},
        {"total_frames": 60, "width": 640, "height": 360, "output_resolution": "8k"},
    ],
)
def test_contradictory_or_incomplete_inputs_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        estimate_batch(rows=1, **kwargs)


# --- outputResolution presets -------------------------------------------------------------


def test_canvas_presets_match_the_hyperframes_table() -> None:
    # packages/parsers CANVAS_DIMENSIONS in the installed CLI (dist/chunk-OYLO6TYK.js) and
    # contract §4.1; config accepts these six.
    assert CANVAS_DIMENSIONS == {
        "landscape": (1920, 1080),
        "portrait": (1080, 1920),
        "landscape-4k": (3840, 2160),
        "portrait-4k": (2160, 3840),
        "square": (1080, 1080),
        "square-4k": (2160, 2160),
    }
    assert tuple(CANVAS_DIMENSIONS) == OUTPUT_RESOLUTIONS


def test_the_installed_cli_has_the_same_presets() -> None:
    home = Path(os.environ.get("HYPERFRAMES_RENDERER_HOME", REPO / ".renderer"))
    dist = home / "node_modules" / "hyperframes" / "dist"
    tables = [
        text.split("var CANVAS_DIMENSIONS = {", 1)[1].split("};", 1)[0]
        for text in (f.read_text("utf-8") for f in sorted(dist.glob("*.js")))
        if "var CANVAS_DIMENSIONS = {" in text
    ]
    if not tables:
        need(f"the hyperframes CLI is not installed under {home}")
    for table in tables:
        for name, (width, height) in CANVAS_DIMENSIONS.items():
            key = f'"{name}"' if "-" in name else name
            assert f"{key}: {{ width: {width}, height: {height} }}" in table, name


def test_the_preset_is_the_rendered_canvas_whatever_width_and_height_say() -> None:
    landscape = estimate_batch(
        rows=1,
        total_frames=300,
        config=RenderConfig(width=1920, height=1080, output_resolution="landscape"),
    )
    uhd = estimate_batch(
        rows=1,
        total_frames=300,
        config=RenderConfig(width=1920, height=1080, output_resolution="landscape-4k"),
    )
    small = estimate_batch(
        rows=1,
        total_frames=300,
        config=RenderConfig(width=640, height=360, output_resolution="landscape-4k"),
    )
    lo, hi = _per_render(landscape), _per_render(uhd)
    assert (hi.width, hi.height) == (3840, 2160) and hi.megapixels == pytest.approx(
        4 * lo.megapixels
    )
    assert _per_render(small).width == 3840
    # The per-frame term is 4x; the fixed overheads are not.
    fixed = (
        DEFAULT_PLAN_SECONDS + lo.chunks * DEFAULT_CHUNK_OVERHEAD_SECONDS + DEFAULT_ASSEMBLE_SECONDS
    )
    assert hi.chunks == lo.chunks
    assert hi.lambda_seconds - fixed == pytest.approx(4 * (lo.lambda_seconds - fixed))
    assert any("3840x2160" in a and "landscape-4k" in a for a in uhd.assumptions)
    assert uhd.canvas.source.startswith("outputResolution landscape-4k")
    plain = estimate_batch(rows=1, total_frames=300, config=RenderConfig(width=1920, height=1080))
    assert plain.canvas.source == "config width x height"
    assert plain.total_usd == pytest.approx(landscape.total_usd)


def test_the_preset_can_be_given_without_a_config() -> None:
    est = estimate_batch(
        rows=1, total_frames=300, width=1920, height=1080, output_resolution="portrait-4k"
    )
    assert (est.canvas.width, est.canvas.height) == (2160, 3840)


@pytest.mark.parametrize(
    ("width", "height", "preset", "agnostic", "expected", "warned"),
    [
        (1920, 1080, "landscape-4k", False, (3840, 2160), False),
        (1080, 1920, "landscape-4k", True, (2160, 3840), False),  # adapted to portrait-4k
        (1080, 1080, "landscape", True, (1080, 1080), False),  # adapted to square
        (1080, 1920, "landscape-4k", False, (3840, 2160), True),  # HyperFrames rejects it
        (1280, 720, "landscape", False, (1920, 1080), True),  # 1.5x: non-integer upscale
        (3840, 2160, "landscape", False, (1920, 1080), False),  # downscale is fine
    ],
)
def test_render_canvas(
    width: int,
    height: int,
    preset: str,
    agnostic: bool,
    expected: tuple[int, int],
    warned: bool,
) -> None:
    canvas = render_canvas(width, height, preset, aspect_agnostic=agnostic)
    assert (canvas.width, canvas.height) == expected
    assert bool(canvas.warnings) == warned, canvas.warnings


def test_canvas_warnings_reach_the_estimate() -> None:
    est = estimate_batch(
        rows=1,
        total_frames=30,
        config=RenderConfig(width=1080, height=1920, output_resolution="landscape-4k"),
    )
    assert any("aspect ratio" in w for w in est.warnings)


# --- the cost gate ------------------------------------------------------------------------


def _known(rows: int = 3) -> BatchEstimate:
    return estimate_batch(
        rows=rows, total_frames=1800, config=RenderConfig(width=1920, height=1080)
    )


def _unknown() -> BatchEstimate:
    return estimate_batch(
        rows=3,
        duration_unknown_reason="the root composition declares no data-duration and a <script>",
        config=RenderConfig(width=1920, height=1080),
    )


def test_gate_passes_under_the_limit_and_asks_above_it() -> None:
    est = _known()
    assert est.total_usd is not None and est.display_cost is not None
    ok = cost_gate(est, max_cost_usd=est.total_usd * 2, confirmed=False)
    assert ok.status == "pass" and not ok.blocked
    assert ok.message.startswith(f"3 renders, estimated {est.display_cost} (assumptions: ")
    over = cost_gate(est, max_cost_usd=0.0001, confirmed=False)
    assert over.status == "needs-approval" and over.blocked
    for text in (f"${est.total_usd:.4f}", "max_cost_usd $0.0001", "confirm_cost=true",
                 "1920x1080", "1800 frames"):  # fmt: skip
        assert text in over.message, over.message
    assert over.estimated_usd == est.total_usd and over.max_cost_usd == 0.0001
    confirmed = cost_gate(est, max_cost_usd=0.0001, confirmed=True)
    assert confirmed.status == "pass" and "confirm" in confirmed.message


def test_gate_with_a_zero_limit_asks_for_any_cost() -> None:
    assert cost_gate(_known(), max_cost_usd=0.0, confirmed=False).status == "needs-approval"
    assert cost_gate(_known(rows=0), max_cost_usd=0.0, confirmed=False).status == "pass"
    nothing = estimate_batch(rows=0, config=RenderConfig(width=640, height=360))
    assert not nothing.known  # no renders cost nothing, whatever their length
    assert cost_gate(nothing, max_cost_usd=0.0, confirmed=False).status == "pass"


def test_unknown_cost_with_a_limit_never_passes_unconfirmed() -> None:
    for limit in (0.0, 50.0, 1e9):
        decision = cost_gate(_unknown(), max_cost_usd=limit, confirmed=False)
        assert decision.status == "needs-approval"
        assert decision.message.startswith("cost unknown: the root composition declares")
        assert "confirm_cost=true" in decision.message
        assert decision.cost_known is False and decision.estimated_usd is None
    # Confirming is the approval: the run may go ahead, and the message says the cost was unknown.
    approved = cost_gate(_unknown(), max_cost_usd=50.0, confirmed=True)
    assert approved.status == "pass" and approved.message.startswith("cost unknown: ")


def test_no_limit_is_reported_as_such() -> None:
    for est in (_known(), _unknown()):
        decision = cost_gate(est, max_cost_usd=None, confirmed=False)
        assert decision.status == "no-limit" and not decision.blocked
        assert "no max_cost_usd" in decision.message


@pytest.mark.parametrize(
    ("limit", "confirmed"),
    [(-1.0, False), (math.nan, False), (math.inf, False), ("5", False), (True, False),
     (5.0, "False"), (5.0, None)],
)  # fmt: skip
def test_gate_rejects_unparsed_arguments(limit: Any, confirmed: Any) -> None:
    # Templated values must go through contract.options first: "False" is truthy.
    with pytest.raises(ValueError):
        cost_gate(_known(), max_cost_usd=limit, confirmed=confirmed)


def test_gate_decision_dumps_for_the_manifest() -> None:
    dumped = cost_gate(_known(), max_cost_usd=1.0, confirmed=False).model_dump(by_alias=True)
    assert set(dumped) == {
        "status",
        "message",
        "maxCostUsd",
        "estimatedUsd",
        "costKnown",
        "confirmed",
    }
