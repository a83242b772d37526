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
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from hyperframes_airflow.contract.progress import (
    DEFAULT_MEMORY_MB,
    LAMBDA_USD_PER_GB_SECOND,
    SFN_USD_PER_TRANSITION,
    display_cost,
)

__all__ = [
    "DEFAULT_ASSEMBLE_SECONDS",
    "DEFAULT_CHUNK_OVERHEAD_SECONDS",
    "DEFAULT_LAMBDA_TIMEOUT_SECONDS",
    "DEFAULT_MAX_PARALLEL_CHUNKS",
    "DEFAULT_PLAN_SECONDS",
    "DEFAULT_SECONDS_PER_MEGAPIXEL_FRAME",
    "INLINE_MAP_MAX_CONCURRENCY",
    "MIN_CHUNK_SIZE",
    "BatchEstimate",
    "RenderEstimate",
    "chunk_plan",
    "estimate_batch",
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
    """Totals for `rows` renders of one composition.

    `assumptions` state each constant and its source, so a gate message can show them.
    """

    rows: int
    memory_mb: int = Field(alias="memoryMb")
    per_render: RenderEstimate = Field(alias="perRender")
    invocations: int
    transitions: int
    lambda_seconds: float = Field(alias="lambdaSeconds")
    lambda_usd: float = Field(alias="lambdaUsd")
    step_functions_usd: float = Field(alias="stepFunctionsUsd")
    total_usd: float = Field(alias="totalUsd")
    display_cost: str = Field(alias="displayCost")
    assumptions: list[str]
    warnings: list[str]


def estimate_batch(
    *,
    rows: int,
    total_frames: int,
    width: int,
    height: int,
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
    """Estimate `rows` renders of `total_frames` frames at `width`x`height` on a `memory_mb` stack.

    `width`/`height` are the rendered size (the composition's, or the `outputResolution` canvas).
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"rows must be a non-negative integer; got {rows!r}")
    _positive("width", width)
    _positive("height", height)
    _positive("memory_mb", memory_mb)
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
    assumptions = [
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
    warnings: list[str] = []
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
        rows=rows,
        memoryMb=memory_mb,
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
