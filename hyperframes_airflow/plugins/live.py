"""Live progress of running Lambda renders for the batch page, read from Step Functions.

The page polls every few seconds and several people may watch one batch, so reads are cached
per execution (`ttl_s`) and bounded per poll (`max_reads`): a 500-row batch with 40 renders
running costs at most `max_reads` DescribeExecution + history reads per poll, the rest shown
from the cache (or without progress until their turn). Progress and cost so far are what the
Node SDK's `getRenderProgress` computes (`contract.progress.render_progress`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from hyperframes_airflow.contract.page import LiveRender
from hyperframes_airflow.contract.progress import render_progress
from hyperframes_airflow.contract.rows import BatchSpec

__all__ = ["LambdaProgress"]


class LambdaProgress:
    """A process-wide cache of execution progress, read through `HyperframesStackHook`.

    :param ttl_s: How long one read serves every poll.
    :param max_reads: Executions read from AWS per call at most (oldest entries first).
    """

    def __init__(self, ttl_s: float = 5.0, max_reads: int = 8) -> None:
        self.ttl_s = ttl_s
        self.max_reads = max_reads
        self._cache: dict[str, tuple[float, LiveRender]] = {}
        self._lock = threading.Lock()
        self.reads = 0
        """Executions read from AWS so far (for tests and logs)."""

    def read(self, spec: BatchSpec | None, arns: Mapping[int, str]) -> dict[int, LiveRender]:
        """Progress by map index for the running executions `arns` (unknown ones left out)."""
        if not arns or spec is None or spec.stack is None:
            return {}
        now = time.monotonic()
        with self._lock:
            stale = sorted(
                (arn for arn in set(arns.values()) if self._age(arn, now) > self.ttl_s),
                key=lambda arn: -self._age(arn, now),
            )[: self.max_reads]
        for arn in stale:
            found = self._fetch(spec, arn)
            if found is not None:
                with self._lock:
                    self._cache[arn] = (time.monotonic(), found)
        with self._lock:
            self._forget(now)
            return {i: self._cache[a][1] for i, a in arns.items() if a in self._cache}

    def _age(self, arn: str, now: float) -> float:
        entry = self._cache.get(arn)
        return float("inf") if entry is None else now - entry[0]

    def _forget(self, now: float) -> None:
        """Drop entries nobody asked about for a while (ended renders)."""
        for arn in [a for a, (t, _) in self._cache.items() if now - t > 60 * self.ttl_s]:
            del self._cache[arn]

    def _fetch(self, spec: BatchSpec, arn: str) -> LiveRender | None:
        from hyperframes_airflow.hooks.stack import HyperframesStackHook

        assert spec.stack is not None
        self.reads += 1
        try:
            hook = HyperframesStackHook(
                aws_conn_id=spec.source_conn_id, region_name=spec.stack.region
            )
            sfn = hook.sfn_hook_in(spec.stack.region)
            describe = sfn.describe_execution(arn)
            events = hook.get_execution_history(arn)
            progress = render_progress(describe, events, memory_mb=spec.stack.lambda_memory_mb)
        except Exception:  # progress is informative: the page shows the row without it
            return None
        total = progress.total_frames  # unknown until the plan says: frames then unknown too
        return LiveRender(
            fraction=float(progress.overall_progress),
            frames_done=int(progress.frames_rendered) if total is not None else None,
            frames_total=int(total) if total is not None else None,
            cost_usd=progress.costs.accrued_so_far_usd,
            execution_arn=arn,
        )
