"""Pre-flight cost estimate for a batch, used by the cost gate before anything is deployed.

What is exact and what is a model:

- **Exact (ported):** the chunk plan (`resolveChunkPlan` in the producer's `plan.ts`, contract
  §5.5 step 2), invocations per render (`1 + chunks + 1`, no retries), state transitions on the
  happy path (`7 + chunks`), and the prices of `costAccounting.ts` (§5.4), which is what
  `getRenderProgress` later reports as the actual cost.
- **Model (calibrated):** Lambda seconds. HyperFrames has no per-frame constant in its cost code;
  the 0.8.170 planner's time model is `60 + frames x 0.11 x megapixels` seconds per chunk (§10).
  We keep its per-frame term, `seconds_per_megapixel_frame = 0.11` (1080p = 2.07 MP, so
  0.23 s per frame), but not its 60 s overhead: that figure sizes worker timeouts conservatively
  and would charge 60 s to every chunk. We use small fixed overheads instead: plan 5 s, each
  chunk 2 s, assemble 3 s.
- **Cross-check** against the two figures HyperFrames publishes (§5.5 step 5), both at 10 GB:
  "60 s 1080p30, 8 chunks ≈ $0.04 Lambda" (≈ 240 Lambda-seconds) → the model gives ≈ 435 s,
  ≈ $0.072 (1.8x high); "480 frames, 5 Lambdas, Lambda $0.0210" (≈ 126 s) → ≈ 124 s, ≈ $0.021.
  The two published figures disagree with each other by 2x per frame, so no single constant fits
  both; erring high suits a cost gate. Calibrate from real runs' `DurationMs` when you have them.

Not included (as in the SDK): the Lambda per-request fee, ephemeral storage above 512 MB, S3,
CloudWatch, retries and cold starts.

**Canvas.** The planner sizes work by the pixels it captures: the composition supersampled to
the `outputResolution` preset when one is set (`CANVAS_DIMENSIONS`), so a `landscape-4k` render
costs about 4x a 1080p one per frame whatever `width`/`height` say (`render_canvas`).

**Unknown cost.** When the composition's length cannot be known before rendering
(`Composition.duration_unknown_reason`), `estimate_batch` returns `known=False` with the reason,
and `cost_gate` treats it as needing approval whenever a limit is set: it fails closed.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hyperframes_airflow.contract.composition import frame_count
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.progress import (
    DEFAULT_MEMORY_MB,
    LAMBDA_USD_PER_GB_SECOND,
    SFN_USD_PER_TRANSITION,
    display_cost,
)

__all__ = [
    "CANVAS_DIMENSIONS",
    "DEFAULT_ASSEMBLE_SECONDS",
    "DEFAULT_CHUNK_OVERHEAD_SECONDS",
    "DEFAULT_LAMBDA_TIMEOUT_SECONDS",
    "DEFAULT_MAX_PARALLEL_CHUNKS",
    "DEFAULT_PLAN_SECONDS",
    "DEFAULT_SECONDS_PER_MEGAPIXEL_FRAME",
    "INLINE_MAP_MAX_CONCURRENCY",
    "MIN_CHUNK_SIZE",
    "BatchEstimate",
    "Canvas",
    "GateDecision",
    "GateStatus",
    "RenderEstimate",
    "chunk_plan",
    "cost_gate",
    "estimate_batch",
    "render_canvas",
]

#: `plan.ts` constants.
MIN_CHUNK_SIZE = 10
DEFAULT_MAX_PARALLEL_CHUNKS = 16
#: `ESTIMATED_SECONDS_PER_MEGAPIXEL_FRAME` of the 0.8.170 planner.
DEFAULT_SECONDS_PER_MEGAPIXEL_FRAME = 0.11
#: Our fixed per-invocation overheads (see the module docstring for why not the planner's 60 s).
DEFAULT_PLAN_SECONDS = 5.0
DEFAULT_CHUNK_OVERHEAD_SECONDS = 2.0
DEFAULT_ASSEMBLE_SECONDS = 3.0
#: The stack's default function timeout; a chunk estimated above it is likely to fail.
DEFAULT_LAMBDA_TIMEOUT_SECONDS = 900
#: AWS caps an inline Map's concurrency at 40, whatever `MaxConcurrencyPath` says.
INLINE_MAP_MAX_CONCURRENCY = 40


#: `CANVAS_DIMENSIONS` of `@hyperframes/parsers` (the installed 0.8.170 CLI's dist, contract
#: §4.1): the presets `RenderConfig.output_resolution` accepts. 0.8.170 also has `*-720p` and
#: `*-480p` presets, which the config does not accept yet.
CANVAS_DIMENSIONS: dict[str, tuple[int, int]] = {
    "landscape": (1920, 1080),
    "portrait": (1080, 1920),
    "landscape-4k": (3840, 2160),
    "portrait-4k": (2160, 3840),
    "square": (1080, 1080),
    "square-4k": (2160, 2160),
}


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def chunk_plan(
    total_frames: int,
    *,
    chunk_size: int | None = None,
    max_parallel_chunks: int | None = None,
    target_chunk_frames: int | None = None,
) -> tuple[int, int]:
    """`(chunk count, frames per chunk)` as the planner resolves them; the last chunk may be short.

    Port of `resolveChunkPlan` (HyperFrames 0.8.10). The 0.8.170 planner can size the count from
    `workerConcurrency` when `maxParallelChunks` is unset; that path is not modelled here.
    """
    _positive("total_frames", total_frames)
    _positive("chunk_size", chunk_size)
    _positive("max_parallel_chunks", max_parallel_chunks)
    _positive("target_chunk_frames", target_chunk_frames)
    max_parallel = max_parallel_chunks or DEFAULT_MAX_PARALLEL_CHUNKS
    if target_chunk_frames is None:
        auto_parallel = max_parallel
    else:
        auto_parallel = min(max_parallel, max(1, math.ceil(total_frames / target_chunk_frames)))
    if chunk_size is not None:
        resolved = chunk_size
    else:
        resolved = max(MIN_CHUNK_SIZE, math.ceil(total_frames / auto_parallel))
    count = min(max_parallel, max(1, math.ceil(total_frames / resolved)))
    effective = max(resolved, math.ceil(total_frames / count))
    count = min(count, math.ceil(total_frames / effective))
    return count, effective


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)


class Canvas(_Model):
    """The frame size a render captures, and where it came from (for the assumptions)."""

    width: int
    height: int
    #: "config width x height", or "outputResolution <preset>" (plus how it was adapted).
    source: str
    #: Why HyperFrames would refuse the preset for this size (checkOutputResolutionCompatibility).
    warnings: list[str] = []


def _fits_aspect(target: tuple[int, int], width: int, height: int) -> bool:
    """`fitsAspect`: the same aspect ratio, or a downscale within a pixel of it."""
    drift = abs(target[0] * height - target[1] * width)
    return drift == 0 or (target[0] < width and drift < min(width, height))


def _tier(preset: str) -> str:
    return preset[preset.index("-") :] if "-" in preset else ""


def _matching_preset(width: int, height: int, chosen: str) -> str | None:
    """`suggestMatchingPreset`: the preset of the chosen tier whose aspect fits the size."""
    for preset, target in CANVAS_DIMENSIONS.items():
        if _fits_aspect(target, width, height) and _tier(preset) == _tier(chosen):
            return preset
    return None


def render_canvas(
    width: int, height: int, output_resolution: str | None = None, *, aspect_agnostic: bool = False
) -> Canvas:
    """The canvas a render captures: `width` x `height`, or the `output_resolution` preset's size
    when one is set (HyperFrames supersamples the composition to it). With `aspect_agnostic`
    (`outputResolutionAspectAgnostic`, the CLI's `1080p`/`4k` aliases) the preset is first
    adapted to the size's orientation (`adaptAspectAgnosticResolution`). A size HyperFrames
    would refuse for the preset is reported in `warnings`, not raised."""
    _positive("width", width)
    _positive("height", height)
    if output_resolution is None:
        return Canvas(width=width, height=height, source="config width x height")
    if output_resolution not in CANVAS_DIMENSIONS:
        raise ValueError(
            f"outputResolution must be one of {', '.join(CANVAS_DIMENSIONS)}; "
            f"got {output_resolution!r}"
        )
    preset = output_resolution
    source = f"outputResolution {preset}"
    if aspect_agnostic:
        adapted = _matching_preset(width, height, preset)
        if adapted is not None and adapted != preset:
            source += f", adapted to {adapted} for a {width}x{height} composition"
            preset = adapted
    target = CANVAS_DIMENSIONS[preset]
    warnings: list[str] = []
    if not _fits_aspect(target, width, height):
        warnings.append(
            f"outputResolution {preset} ({target[0]}x{target[1]}) does not match the aspect "
            f"ratio of the composition ({width}x{height}); HyperFrames will refuse to render it"
        )
    elif target[0] / width >= 1 and not (target[0] / width).is_integer():
        warnings.append(
            f"outputResolution {preset} needs a non-integer scale factor "
            f"({target[0] / width:g}x) from {width}x{height}; HyperFrames will refuse to render it"
        )
    return Canvas(width=target[0], height=target[1], source=source, warnings=warnings)


class RenderEstimate(_Model):
    """One render's expected work and cost (USD fields unrounded; `displayCost` is rounded)."""

    total_frames: int = Field(alias="totalFrames")
    width: int
    height: int
    megapixels: float
    chunks: int
    frames_per_chunk: int = Field(alias="framesPerChunk")
    invocations: int
    transitions: int
    lambda_seconds: float = Field(alias="lambdaSeconds")
    max_chunk_seconds: float = Field(alias="maxChunkSeconds")
    #: Plan + chunk waves (all chunks at once, up to the inline Map cap of 40) + assemble,
    #: assuming enough Lambda concurrency; other running renders share it.
    wall_seconds: float = Field(alias="wallSeconds")
    lambda_usd: float = Field(alias="lambdaUsd")
    step_functions_usd: float = Field(alias="stepFunctionsUsd")
    total_usd: float = Field(alias="totalUsd")
    display_cost: str = Field(alias="displayCost")


class BatchEstimate(_Model):
    """Totals for `rows` renders of one composition, or why they cannot be known.

    `known=False` (with `reason`) when the composition's length is unknown before rendering:
    then `per_render` and every count and USD figure are None, and `cost_gate` fails closed.
    `assumptions` state each constant and its source, so a gate message can show them.
    """

    known: bool
    reason: str | None
    rows: int
    memory_mb: int = Field(alias="memoryMb")
    canvas: Canvas
    fps: int | None
    duration_s: float | None = Field(alias="durationS")
    per_render: RenderEstimate | None = Field(alias="perRender")
    invocations: int | None
    transitions: int | None
    lambda_seconds: float | None = Field(alias="lambdaSeconds")
    lambda_usd: float | None = Field(alias="lambdaUsd")
    step_functions_usd: float | None = Field(alias="stepFunctionsUsd")
    total_usd: float | None = Field(alias="totalUsd")
    display_cost: str | None = Field(alias="displayCost")
    assumptions: list[str]
    warnings: list[str]


def _resolve_inputs(
    config: RenderConfig | None,
    *,
    fps: int | None,
    width: int | None,
    height: int | None,
    output_resolution: str | None,
    chunk_size: int | None,
    max_parallel_chunks: int | None,
    target_chunk_frames: int | None,
) -> tuple[Canvas, int | None, int | None, int | None, int | None]:
    """`(canvas, fps, chunk_size, max_parallel_chunks, target_chunk_frames)` from a config, or
    from the loose arguments; never a mix of both."""
    if config is not None:
        loose = {
            "fps": fps,
            "width": width,
            "height": height,
            "output_resolution": output_resolution,
            "chunk_size": chunk_size,
            "max_parallel_chunks": max_parallel_chunks,
            "target_chunk_frames": target_chunk_frames,
        }
        given = sorted(name for name, value in loose.items() if value is not None)
        if given:
            raise ValueError(
                f"give either config or {', '.join(given)}, not both (the config holds them)"
            )
        canvas = render_canvas(
            config.width,
            config.height,
            config.output_resolution,
            aspect_agnostic=bool(config.output_resolution_aspect_agnostic),
        )
        return (
            canvas,
            config.fps,
            config.chunk_size,
            config.max_parallel_chunks,
            config.target_chunk_frames,
        )
    if width is None or height is None:
        raise ValueError("give config, or width and height")
    canvas = render_canvas(width, height, output_resolution)
    return canvas, fps, chunk_size, max_parallel_chunks, target_chunk_frames


def estimate_batch(
    *,
    rows: int,
    config: RenderConfig | None = None,
    duration_s: float | None = None,
    duration_unknown_reason: str | None = None,
    total_frames: int | None = None,
    fps: int | None = None,
    width: int | None = None,
    height: int | None = None,
    output_resolution: str | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    chunk_size: int | None = None,
    max_parallel_chunks: int | None = None,
    target_chunk_frames: int | None = None,
    seconds_per_megapixel_frame: float = DEFAULT_SECONDS_PER_MEGAPIXEL_FRAME,
    chunk_overhead_seconds: float = DEFAULT_CHUNK_OVERHEAD_SECONDS,
    plan_seconds: float = DEFAULT_PLAN_SECONDS,
    assemble_seconds: float = DEFAULT_ASSEMBLE_SECONDS,
    lambda_timeout_seconds: int = DEFAULT_LAMBDA_TIMEOUT_SECONDS,
) -> BatchEstimate:
    """Estimate `rows` renders of one composition on a `memory_mb` stack.

    The render settings come from `config` (fps, canvas incl. `outputResolution`, chunking), or
    from the loose `fps`/`width`/`height`/`output_resolution`/`chunk_*` arguments; giving both
    is a ValueError. The length is `duration_s` (turned into frames at the fps exactly as the
    producer does) or `total_frames`, not both. With neither, the result is `known=False` with
    `reason = duration_unknown_reason` (pass `Composition.duration_unknown_reason`), or a
    generic reason: the caller must then fail closed (`cost_gate` does).
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"rows must be a non-negative integer; got {rows!r}")
    _positive("memory_mb", memory_mb)
    canvas, fps, chunk_size, max_parallel_chunks, target_chunk_frames = _resolve_inputs(
        config,
        fps=fps,
        width=width,
        height=height,
        output_resolution=output_resolution,
        chunk_size=chunk_size,
        max_parallel_chunks=max_parallel_chunks,
        target_chunk_frames=target_chunk_frames,
    )
    if duration_s is not None and total_frames is not None:
        raise ValueError("give duration_s or total_frames, not both")
    if duration_s is not None:
        if isinstance(duration_s, bool) or not math.isfinite(duration_s) or duration_s <= 0:
            raise ValueError(f"duration_s must be a positive number of seconds; got {duration_s!r}")
        if fps is None:
            raise ValueError("duration_s needs an fps (config.fps or fps=) to count frames")
        total_frames = frame_count(duration_s, fps)
    canvas_line = f"canvas: {canvas.width}x{canvas.height} ({canvas.source})"
    if total_frames is None:
        reason = duration_unknown_reason or (
            "the composition's duration is unknown before rendering; "
            'add data-duration="<seconds>" to the root composition element'
        )
        return BatchEstimate(
            known=False,
            reason=reason,
            rows=rows,
            memoryMb=memory_mb,
            canvas=canvas,
            fps=fps,
            durationS=None,
            perRender=None,
            invocations=None,
            transitions=None,
            lambdaSeconds=None,
            lambdaUsd=None,
            stepFunctionsUsd=None,
            totalUsd=None,
            displayCost=None,
            assumptions=[canvas_line, f"duration: unknown ({reason})"],
            warnings=list(canvas.warnings),
        )
    return _known_estimate(
        rows=rows,
        total_frames=total_frames,
        canvas=canvas,
        canvas_line=canvas_line,
        fps=fps,
        duration_s=duration_s,
        memory_mb=memory_mb,
        chunk_size=chunk_size,
        max_parallel_chunks=max_parallel_chunks,
        target_chunk_frames=target_chunk_frames,
        seconds_per_megapixel_frame=seconds_per_megapixel_frame,
        chunk_overhead_seconds=chunk_overhead_seconds,
        plan_seconds=plan_seconds,
        assemble_seconds=assemble_seconds,
        lambda_timeout_seconds=lambda_timeout_seconds,
    )


def _known_estimate(
    *,
    rows: int,
    total_frames: int,
    canvas: Canvas,
    canvas_line: str,
    fps: int | None,
    duration_s: float | None,
    memory_mb: int,
    chunk_size: int | None,
    max_parallel_chunks: int | None,
    target_chunk_frames: int | None,
    seconds_per_megapixel_frame: float,
    chunk_overhead_seconds: float,
    plan_seconds: float,
    assemble_seconds: float,
    lambda_timeout_seconds: int,
) -> BatchEstimate:
    width, height = canvas.width, canvas.height
    chunks, per_chunk = chunk_plan(
        total_frames,
        chunk_size=chunk_size,
        max_parallel_chunks=max_parallel_chunks,
        target_chunk_frames=target_chunk_frames,
    )
    megapixels = width * height / 1_000_000
    seconds_per_frame = seconds_per_megapixel_frame * megapixels
    chunk_seconds = chunks * chunk_overhead_seconds + total_frames * seconds_per_frame
    lambda_seconds = plan_seconds + chunk_seconds + assemble_seconds
    max_chunk_seconds = chunk_overhead_seconds + per_chunk * seconds_per_frame
    waves = math.ceil(chunks / min(chunks, INLINE_MAP_MAX_CONCURRENCY))
    wall_seconds = plan_seconds + waves * max_chunk_seconds + assemble_seconds
    gb = memory_mb / 1024
    lambda_usd = gb * lambda_seconds * LAMBDA_USD_PER_GB_SECOND
    transitions = 7 + chunks
    sfn_usd = transitions * SFN_USD_PER_TRANSITION
    per_render = RenderEstimate(
        totalFrames=total_frames,
        width=width,
        height=height,
        megapixels=megapixels,
        chunks=chunks,
        framesPerChunk=per_chunk,
        invocations=1 + chunks + 1,
        transitions=transitions,
        lambdaSeconds=lambda_seconds,
        maxChunkSeconds=max_chunk_seconds,
        wallSeconds=wall_seconds,
        lambdaUsd=lambda_usd,
        stepFunctionsUsd=sfn_usd,
        totalUsd=lambda_usd + sfn_usd,
        displayCost=display_cost(lambda_usd + sfn_usd),
    )
    if duration_s is not None:
        frames_line = (
            f"frames: {total_frames} frames per render ({duration_s:g} s at {fps} fps, "
            "HyperFrames durationToFrameCount)"
        )
    else:
        frames_line = f"frames: {total_frames} frames per render (given)"
    assumptions = [
        canvas_line,
        frames_line,
        f"chunk plan: {chunks} chunk(s) of up to {per_chunk} frames (HyperFrames resolveChunkPlan:"
        f" MIN_CHUNK_SIZE={MIN_CHUNK_SIZE}, default maxParallelChunks="
        f"{DEFAULT_MAX_PARALLEL_CHUNKS})",
        f"render time: {seconds_per_megapixel_frame} s per megapixel-frame "
        f"(HyperFrames 0.8.170 planner ESTIMATED_SECONDS_PER_MEGAPIXEL_FRAME) x "
        f"{megapixels:.4g} MP = {seconds_per_frame:.4g} s per frame",
        f"fixed Lambda time: plan {plan_seconds} s, {chunk_overhead_seconds} s per chunk, "
        f"assemble {assemble_seconds} s (hyperframes-airflow calibration against the HyperFrames "
        "docs' cost examples; the planner's 60 s overhead is a timeout margin, not a cost)",
        f"Lambda price: {LAMBDA_USD_PER_GB_SECOND} USD per GB-second at {memory_mb} MB "
        "(HyperFrames costAccounting.ts, us-east-1 x86 on-demand)",
        f"Step Functions: 7 + chunks = {transitions} transitions per render at "
        f"{SFN_USD_PER_TRANSITION} USD each (HyperFrames costAccounting.ts, Standard workflow)",
        "happy path only: no retries, cold starts, request fees, ephemeral storage, S3 or "
        "CloudWatch (as in the HyperFrames SDK's own cost figures)",
    ]
    warnings: list[str] = list(canvas.warnings)
    if max_chunk_seconds > lambda_timeout_seconds:
        warnings.append(
            f"a chunk of {per_chunk} frames is estimated at {max_chunk_seconds:.0f} s, above the "
            f"{lambda_timeout_seconds} s Lambda timeout; lower chunkSize or raise "
            "maxParallelChunks"
        )
    if chunks > INLINE_MAP_MAX_CONCURRENCY:
        warnings.append(
            f"{chunks} chunks exceed the inline Map concurrency cap of "
            f"{INLINE_MAP_MAX_CONCURRENCY}; chunks will run in waves"
        )
    total_lambda_usd = rows * lambda_usd
    total_sfn_usd = rows * sfn_usd
    return BatchEstimate(
        known=True,
        reason=None,
        rows=rows,
        memoryMb=memory_mb,
        canvas=canvas,
        fps=fps,
        durationS=duration_s,
        perRender=per_render,
        invocations=rows * per_render.invocations,
        transitions=rows * transitions,
        lambdaSeconds=rows * lambda_seconds,
        lambdaUsd=total_lambda_usd,
        stepFunctionsUsd=total_sfn_usd,
        totalUsd=total_lambda_usd + total_sfn_usd,
        displayCost=display_cost(total_lambda_usd + total_sfn_usd),
        assumptions=assumptions,
        warnings=warnings,
    )


# --- the cost gate ------------------------------------------------------------------------

#: `pass`: render. `needs-approval`: do not render until confirmed (or the limit is raised).
#: `no-limit`: no `max_cost_usd` was set, so nothing was checked.
GateStatus = Literal["pass", "needs-approval", "no-limit"]

_CONFIRM_HINT = (
    "Confirm it by triggering with confirm_cost=true (DAG param or render_batch argument)"
)


class GateDecision(_Model):
    """What `cost_gate` decided, with a message for the log, the task failure and the manifest."""

    status: GateStatus
    message: str
    max_cost_usd: float | None = Field(alias="maxCostUsd")
    estimated_usd: float | None = Field(alias="estimatedUsd")
    cost_known: bool = Field(alias="costKnown")
    confirmed: bool

    @property
    def blocked(self) -> bool:
        """True when the run must stop here (`needs-approval`)."""
        return self.status == "needs-approval"


def _usd(value: float) -> str:
    return f"${value:.4f}" if value == 0 or value >= 0.00005 else f"${value:.2g}"


def _estimate_summary(estimate: BatchEstimate) -> str:
    """ "N renders, estimated $X (assumptions: ...)" or "cost unknown: <reason>"."""
    renders = f"{estimate.rows} render{'' if estimate.rows == 1 else 's'}"
    per = estimate.per_render
    if not estimate.known or per is None:
        return f"cost unknown: {estimate.reason} ({renders})"
    canvas = estimate.canvas
    if estimate.duration_s is not None:
        length = f"{per.total_frames} frames ({estimate.duration_s:g} s at {estimate.fps} fps)"
    else:
        length = f"{per.total_frames} frames"
    return (
        f"{renders}, estimated {estimate.display_cost} (assumptions: {canvas.width}x"
        f"{canvas.height} canvas from {canvas.source}, {length} and {per.chunks} chunk(s) per "
        f"render, {estimate.memory_mb} MB Lambda, {DEFAULT_SECONDS_PER_MEGAPIXEL_FRAME} s per "
        "megapixel-frame; happy path, no retries)"
    )


def cost_gate(
    estimate: BatchEstimate, *, max_cost_usd: float | None, confirmed: bool
) -> GateDecision:
    """Decide whether a batch may render. Pure: log, store or raise on the result.

    - `max_cost_usd=None`: `no-limit` (nothing checked; the message still states the estimate).
    - A known cost at or below the limit, or no rows at all: `pass`.
    - A known cost above the limit, or an unknown cost (`estimate.known` False) under any
      limit, 0 included: `needs-approval`, unless `confirmed` (then `pass`, and the message
      says it was confirmed). An unknown cost is never compared with the limit.

    `max_cost_usd` must already be a finite number >= 0 or None and `confirmed` a real bool
    (parse templated strings with `contract.options.parse_cost_limit`/`parse_bool`): anything
    else is a ValueError, so a raw "False" can never approve a run.
    """
    if max_cost_usd is not None and (
        isinstance(max_cost_usd, bool)
        or not isinstance(max_cost_usd, int | float)
        or not math.isfinite(max_cost_usd)
        or max_cost_usd < 0
    ):
        raise ValueError(
            f"max_cost_usd must be a finite number >= 0 or None; got {max_cost_usd!r} "
            "(parse templated values with contract.options.parse_cost_limit)"
        )
    if not isinstance(confirmed, bool):
        raise ValueError(
            f"confirmed must be a bool; got {confirmed!r} "
            "(parse templated values with contract.options.parse_bool)"
        )
    summary = _estimate_summary(estimate)
    known = estimate.known and estimate.total_usd is not None
    total = estimate.total_usd if known else None

    def decide(status: GateStatus, message: str) -> GateDecision:
        return GateDecision(
            status=status,
            message=message,
            maxCostUsd=None if max_cost_usd is None else float(max_cost_usd),
            estimatedUsd=total,
            costKnown=known,
            confirmed=confirmed,
        )

    if max_cost_usd is None:
        return decide("no-limit", f"{summary}; no max_cost_usd set, so the cost gate is off")
    limit = _usd(max_cost_usd)
    if estimate.rows == 0:
        return decide("pass", f"{summary}; nothing to render, within max_cost_usd {limit}")
    if total is not None and total <= max_cost_usd:
        return decide("pass", f"{summary}; within max_cost_usd {limit}")
    if total is not None:
        if confirmed:
            return decide("pass", f"{summary}; above max_cost_usd {limit}, confirmed")
        return decide(
            "needs-approval",
            f"{summary}; exceeds max_cost_usd {limit}. {_CONFIRM_HINT}, or raise max_cost_usd.",
        )
    if confirmed:
        return decide(
            "pass", f"{summary}; max_cost_usd {limit} cannot be checked, rendering as confirmed"
        )
    return decide(
        "needs-approval",
        f"{summary}; max_cost_usd {limit} cannot be checked against an unknown cost. "
        f"{_CONFIRM_HINT}, or make the length known.",
    )
