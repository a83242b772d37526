"""One Step Functions poller per state machine per triggerer process, shared by every render.

A thousand deferred renders that each called DescribeExecution every few seconds would blow the
account's read quotas (DescribeExecution refills at 15/s, ListExecutions at 5/s). Instead, every
waiting render registers here; one sweep of `ListExecutions(statusFilter=RUNNING)` per interval
serves all of them, and DescribeExecution is called only for watched executions that are no
longer listed as running. All calls draw from process-wide token buckets, with jitter so many
triggerers do not sweep in lockstep.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

ClientFactory = Callable[[], Awaitable[AbstractAsyncContextManager[Any]]]

#: Read budgets per triggerer process, well under the Step Functions account quotas
#: (DescribeExecution 15/s, ListExecutions 5/s, GetExecutionHistory 20/s in the big regions),
#: leaving room for other triggerers, the workers and the console.
LIST_PER_SECOND = 2.0
DESCRIBE_PER_SECOND = 5.0
HISTORY_PER_SECOND = 5.0
#: Sweeps that may fail in a row (throttling, network) before the waiting renders are failed.
MAX_CONSECUTIVE_FAILURES = 10


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

    def __init__(self) -> None:
        self.list = TokenBucket(LIST_PER_SECOND)
        self.describe = TokenBucket(DESCRIBE_PER_SECOND, burst=10)
        self.history = TokenBucket(HISTORY_PER_SECOND, burst=10)


# Keyed by the loop object (weakly), not id(loop): asyncio primitives are bound to one loop, and
# dag.test() runs each trigger in a fresh loop that may reuse a dead loop's id.
_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadBudget] = (
    weakref.WeakKeyDictionary()
)


def read_budget() -> ReadBudget:
    loop = asyncio.get_running_loop()
    if loop not in _budgets:
        _budgets[loop] = ReadBudget()
    return _budgets[loop]


class ExecutionWatcher:
    """Resolves one future per watched execution when that execution leaves RUNNING."""

    _registry: ClassVar[
        weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, str], ExecutionWatcher]
        ]
    ] = weakref.WeakKeyDictionary()

    def __init__(
        self,
        key: tuple[str, str],
        state_machine_arn: str,
        client_factory: ClientFactory,
        interval: float,
    ) -> None:
        self._key = key
        self.state_machine_arn = state_machine_arn
        self._client_factory = client_factory
        self.interval = interval
        self._watched: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.sweeps = 0
        self.consecutive_failures = 0
        self.describes = 0

    @classmethod
    def for_state_machine(
        cls,
        *,
        conn_key: str,
        state_machine_arn: str,
        client_factory: ClientFactory,
        interval: float,
    ) -> ExecutionWatcher:
        watchers = cls._registry.setdefault(asyncio.get_running_loop(), {})
        key = (conn_key, state_machine_arn)
        watcher = watchers.get(key)
        if watcher is None:
            watcher = cls(key, state_machine_arn, client_factory, interval)
            watchers[key] = watcher
        watcher.interval = min(watcher.interval, interval)
        return watcher

    def watch(self, execution_arn: str) -> asyncio.Future[dict[str, Any]]:
        """A future that resolves to DescribeExecution once the execution is no longer RUNNING."""
        future = self._watched.get(execution_arn)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._watched[execution_arn] = future
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"hf-watch:{self.state_machine_arn}")
        return future

    def unwatch(self, execution_arn: str) -> None:
        future = self._watched.pop(execution_arn, None)
        if future is not None and not future.done():
            future.cancel()

    async def _run(self) -> None:
        budget = read_budget()
        try:
            while self._watched:
                await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))
                if not self._watched:
                    break
                try:
                    await self._sweep(budget)
                    self.consecutive_failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # transient: retried next interval, up to a limit
                    self.consecutive_failures += 1
                    if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                        for future in self._watched.values():
                            if not future.done():
                                future.set_exception(exc)
                        self._watched.clear()
        finally:
            watchers = ExecutionWatcher._registry.get(asyncio.get_running_loop(), {})
            if watchers.get(self._key) is self and not self._watched:
                watchers.pop(self._key, None)

    async def _sweep(self, budget: ReadBudget) -> None:
        self.sweeps += 1
        async with await self._client_factory() as client:
            running: set[str] = set()
            token: str | None = None
            while True:
                await budget.list.acquire()
                kwargs: dict[str, Any] = {
                    "stateMachineArn": self.state_machine_arn,
                    "statusFilter": "RUNNING",
                    "maxResults": 1000,
                }
                if token:
                    kwargs["nextToken"] = token
                page = await client.list_executions(**kwargs)
                running.update(e["executionArn"] for e in page.get("executions", []))
                token = page.get("nextToken")
                if not token:
                    break
            for arn in [a for a in self._watched if a not in running]:
                future = self._watched.get(arn)
                if future is None or future.done():
                    continue
                await budget.describe.acquire()
                self.describes += 1
                try:
                    described = await client.describe_execution(executionArn=arn)
                except client.exceptions.ExecutionDoesNotExist:
                    described = {
                        "executionArn": arn,
                        "status": "ABORTED",
                        "error": "ExecutionDoesNotExist",
                        "cause": "execution not found",
                    }
                if described.get("status", "RUNNING") != "RUNNING":
                    self._watched.pop(arn, None)
                    future.set_result(described)
