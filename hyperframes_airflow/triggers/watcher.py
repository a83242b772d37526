"""One Step Functions poller per state machine per triggerer process, shared by every render.

A thousand deferred renders that each called DescribeExecution every few seconds would blow the
account's read quotas (DescribeExecution refills at 15/s, ListExecutions at 5/s). Instead every
waiting render registers here, saying when it expects its render to end; one
`ListExecutions(statusFilter=RUNNING)` sweep serves all of them. Sweeps come often (every
`NEAR_INTERVAL`) while some render is due, and rarely (`FAR_INTERVAL`) while none is, so an end
is seen within about a second at well under one read per render. Expected durations start from
the estimate and then follow what this state machine's renders really took.

All reads draw from process-wide token buckets, with jitter so many triggerers do not sweep in
lockstep. A render missing from a sweep is only a candidate: the caller confirms the end from
the execution's history, which it reads anyway for the manifest row.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "FAR_INTERVAL",
    "NEAR_INTERVAL",
    "READ_RATE_OPTIONS",
    "ExecutionWatcher",
    "ReadBudget",
    "TokenBucket",
    "configured_rates",
    "overdue_delay",
    "read_budget",
]

#: Read budgets per triggerer process: option of the provider's `[hyperframes]` config
#: section -> (default, what it paces). The defaults stay well under the Step Functions account
#: quotas, leaving room for other triggerers, the workers and the console.
READ_RATE_OPTIONS: dict[str, tuple[float, str]] = {
    "sfn_history_per_second": (
        5.0,
        "GetExecutionHistory calls: one per row as it ends, plus progress, so this is the most "
        "rows per second one triggerer can finish. Account quota: 20/s in the big regions.",
    ),
    "sfn_list_per_second": (
        2.0,
        "ListExecutions calls: one sweep serves every waiting render. Account quota: 5/s.",
    ),
    "sfn_describe_per_second": (
        5.0,
        "DescribeExecution calls: only when a start finds its name taken. Account quota: "
        "15/s in the big regions.",
    ),
}
#: Sweep spacing while a render is due (or overdue), and while none is.
NEAR_INTERVAL = 0.5
FAR_INTERVAL = 10.0
#: How long before its expected end a render counts as due.
LEAD_SECONDS = 2.0
#: An overdue render is looked for again after this fraction of the time it has run past its
#: expected end: often right after it (an estimate is rarely exact), less as it overruns.
OVERDUE_BACKOFF = 0.1
#: A render must have been watched this long before a sweep's silence counts (list lag).
LIST_GRACE_SECONDS = 1.0
#: Sweeps that may fail in a row (throttling, network) before the waiting renders are failed.
MAX_CONSECUTIVE_FAILURES = 10

RunningLister = Callable[[Callable[[], Awaitable[None]]], Awaitable[set[str]]]


class TokenBucket:
    """An async token bucket: `await acquire()` waits for a token; `try_acquire()` never waits."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def acquire(self) -> None:
        async with self._lock:
            while not self.try_acquire():
                await asyncio.sleep((1 - self._tokens) / self.rate)


class ReadBudget:
    """The process-wide buckets (one set per event loop: the triggerer runs one loop)."""

    def __init__(self, rates: Mapping[str, float]) -> None:
        """`rates`: every `READ_RATE_OPTIONS` option's value (`configured_rates`)."""
        self.list = TokenBucket(rates["sfn_list_per_second"])
        self.describe = TokenBucket(
            rates["sfn_describe_per_second"], burst=max(10, rates["sfn_describe_per_second"])
        )
        self.history = TokenBucket(
            rates["sfn_history_per_second"], burst=max(10, rates["sfn_history_per_second"])
        )


def configured_rates() -> dict[str, float]:
    """The `[hyperframes]` read rates of this deployment (the defaults where unset)."""
    from airflow.sdk import conf

    rates = {}
    for option, (default, _) in READ_RATE_OPTIONS.items():
        rate = conf.getfloat("hyperframes", option, fallback=default)
        if not rate > 0:
            raise ValueError(f"[hyperframes] {option} must be a positive number; got {rate!r}")
        rates[option] = rate
    return rates


# Keyed by the loop object (weakly): asyncio primitives are bound to one loop, and dag.test()
# runs each trigger in a fresh loop that may reuse a dead loop's id.
_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadBudget] = (
    weakref.WeakKeyDictionary()
)


def read_budget() -> ReadBudget:
    loop = asyncio.get_running_loop()
    if loop not in _budgets:
        _budgets[loop] = ReadBudget(configured_rates())
    return _budgets[loop]


@dataclass
class _Watch:
    future: asyncio.Future[None]
    since: float
    due: float
    #: When the render is expected to end (`since` when nothing is known).
    expected_end: float


def overdue_delay(now: float, expected_end: float, far: float = FAR_INTERVAL) -> float:
    """How long to wait before looking again for a render still running at `now`."""
    return min(far, max(NEAR_INTERVAL, OVERDUE_BACKOFF * (now - expected_end)))


@dataclass
class _Stats:
    """Recent render durations of one state machine (what "expected" learns from)."""

    durations: deque[float] = field(default_factory=lambda: deque(maxlen=50))

    def expected(self, fallback: float | None) -> float | None:
        if len(self.durations) >= 1:
            return statistics.median(self.durations)
        return fallback


class ExecutionWatcher:
    """Resolves one future per watched execution once a sweep no longer lists it as RUNNING."""

    _registry: ClassVar[
        weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, ...], ExecutionWatcher]
        ]
    ] = weakref.WeakKeyDictionary()

    def __init__(self, key: tuple[str, ...], list_running: RunningLister, far: float) -> None:
        self._key = key
        self._list_running = list_running
        self.far = far
        self._watched: dict[str, _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.stats = _Stats()
        self.sweeps = 0
        self.consecutive_failures = 0

    @classmethod
    def for_state_machine(
        cls, key: tuple[str, ...], list_running: RunningLister, *, far: float = FAR_INTERVAL
    ) -> ExecutionWatcher:
        """The loop's watcher for `key` (connection, region, state machine), made on first use."""
        watchers = cls._registry.setdefault(asyncio.get_running_loop(), {})
        watcher = watchers.get(key)
        if watcher is None:
            watcher = watchers[key] = cls(key, list_running, far)
        watcher.far = min(watcher.far, far)
        return watcher

    def expected_seconds(self, fallback: float | None) -> float | None:
        """How long a render of this state machine is expected to take."""
        return self.stats.expected(fallback)

    def record_duration(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.durations.append(seconds)

    def watch(
        self, execution_arn: str, *, started: float, expected: float | None
    ) -> asyncio.Future[None]:
        """A future resolved when a sweep no longer lists the execution as RUNNING.

        `started` is `time.monotonic()` when it started; `expected` its expected duration.
        """
        loop = asyncio.get_running_loop()
        watch = self._watched.get(execution_arn)
        if watch is None or watch.future.done():
            now = time.monotonic()
            if expected is None:
                watch = _Watch(
                    loop.create_future(), since=now, due=now + self.far, expected_end=now
                )
            else:
                end = started + expected
                watch = _Watch(
                    loop.create_future(), since=now, due=end - LEAD_SECONDS, expected_end=end
                )
            self._watched[execution_arn] = watch
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"hf-watch:{self._key[-1]}")
        return watch.future

    def unwatch(self, execution_arn: str) -> None:
        watch = self._watched.pop(execution_arn, None)
        if watch is not None and not watch.future.done():
            watch.future.cancel()

    def _next_delay(self, now: float) -> float:
        earliest = min((w.due for w in self._watched.values()), default=now + self.far)
        if earliest <= now:
            return NEAR_INTERVAL * random.uniform(0.8, 1.2)
        return min(self.far, max(NEAR_INTERVAL, earliest - now)) * random.uniform(0.9, 1.1)

    async def _run(self) -> None:
        budget = read_budget()
        try:
            while self._watched:
                self._wake.clear()
                delay = self._next_delay(time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                    continue  # a new render registered: reconsider the schedule
                except TimeoutError:
                    pass
                if not self._watched:
                    break
                try:
                    await self._sweep(budget)
                    self.consecutive_failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # transient: retried next time, up to a limit
                    self.consecutive_failures += 1
                    if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                        for watch in self._watched.values():
                            if not watch.future.done():
                                watch.future.set_exception(exc)
                        self._watched.clear()
        finally:
            watchers = ExecutionWatcher._registry.get(asyncio.get_running_loop(), {})
            if watchers.get(self._key) is self and not self._watched:
                watchers.pop(self._key, None)

    async def _sweep(self, budget: ReadBudget) -> None:
        self.sweeps += 1
        began = time.monotonic()
        running = await self._list_running(budget.list.acquire)
        now = time.monotonic()
        for arn, watch in list(self._watched.items()):
            if watch.future.done():
                continue
            if arn in running:
                if watch.due <= now:  # overdue: look again soon, later the more it overran
                    watch.due = now + overdue_delay(now, watch.expected_end, self.far)
                continue
            if began - watch.since < LIST_GRACE_SECONDS:
                continue  # started just now: the list may not show it yet
            self._watched.pop(arn, None)
            watch.future.set_result(None)
