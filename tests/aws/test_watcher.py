"""The shared Step Functions watcher: how soon it sees a render end, and what that costs in sweeps.

The lister is a stand-in for `ListExecutions(statusFilter=RUNNING)` (a set that loses the render
when it ends), so the timing is the watcher's own; the real call is covered by the lane tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hyperframes_airflow.triggers.watcher import (
    FAR_INTERVAL,
    NEAR_INTERVAL,
    READ_RATE_OPTIONS,
    ExecutionWatcher,
    configured_rates,
    overdue_delay,
    read_budget,
)


def test_an_overdue_render_is_looked_for_again_by_how_far_it_overran() -> None:
    started = 1000.0
    end = started + 120.0  # a 120 s render whose estimate was right
    # Just past its expected end: look again at once, however long it has run.
    assert overdue_delay(end + 0.5, end) == NEAR_INTERVAL
    # Overrunning by 50 s: back off to a tenth of the overrun.
    assert overdue_delay(end + 50.0, end) == 5.0
    # Never longer than the far interval.
    assert overdue_delay(end + 3600.0, end) == FAR_INTERVAL


def test_an_underestimated_render_is_seen_soon_after_it_ends() -> None:
    async def scenario() -> tuple[float, int]:
        running = {"arn:1"}
        calls = 0

        async def list_running(acquire: Callable[[], Awaitable[None]]) -> set[str]:
            nonlocal calls
            calls += 1
            await acquire()
            return set(running)

        watcher = ExecutionWatcher(("conn", "region", "sm"), list_running, far=FAR_INTERVAL)
        now = time.monotonic()
        future = watcher.watch("arn:1", started=now, expected=1.0)  # really takes 4 s
        await asyncio.sleep(4.0)
        running.clear()
        ended = time.monotonic()
        await asyncio.wait_for(future, timeout=15)
        return time.monotonic() - ended, calls

    lag, sweeps = asyncio.run(scenario())
    assert lag < 1.5, f"end seen {lag:.2f} s late"
    # Due from the start (within LEAD_SECONDS), then at the near interval: a handful of sweeps.
    assert sweeps <= 4.0 / NEAR_INTERVAL * 1.5 + 3, sweeps


def test_read_rates_are_the_deployments_hyperframes_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`[hyperframes] sfn_*_per_second`: registered by the provider (so `airflow config` shows
    them with their defaults) and read by each triggerer loop's budget."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    env.pop("AIRFLOW__HYPERFRAMES__SFN_HISTORY_PER_SECOND", None)
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "config",
            "get-value",
            "hyperframes",
            "sfn_history_per_second",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert shown.stdout.strip() == str(READ_RATE_OPTIONS["sfn_history_per_second"][0])

    monkeypatch.setenv("AIRFLOW__HYPERFRAMES__SFN_HISTORY_PER_SECOND", "50")

    async def rates() -> tuple[float, float]:
        budget = read_budget()
        return budget.history.rate, budget.list.rate

    assert asyncio.run(rates()) == (50.0, READ_RATE_OPTIONS["sfn_list_per_second"][0])
    monkeypatch.setenv("AIRFLOW__HYPERFRAMES__SFN_HISTORY_PER_SECOND", "0")
    with pytest.raises(ValueError, match=r"\[hyperframes\] sfn_history_per_second"):
        configured_rates()
