"""Test-only pieces the stack-test DAGs use (importable by every component: PYTHONPATH).

`CrashAfterStartTrigger` dies right after StartExecution, on try 1, for a lane whose first row's
output key contains `crash`: the window a real triggerer crash or trigger failure can hit, where
the execution exists but Airflow recorded nothing about it. Its task then fails and retries; the
retry must find that execution and wait on it instead of starting a second render.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from hyperframes_airflow.operators.render_lambda import HyperframesLambdaRenderOperator
from hyperframes_airflow.triggers.render import HyperframesRenderTrigger


class CrashAfterStartTrigger(HyperframesRenderTrigger):
    async def run(self) -> AsyncIterator[Any]:
        crash = "crash" in self.lane["rows"][0]["outputKey"]
        if crash and int(self.render_task.get("try_number") or 1) == 1:
            [runner] = self.runners()
            lane = asyncio.ensure_future(runner.run())
            while not lane.done() and not await _started(runner):
                await asyncio.sleep(0.05)
            lane.cancel()
            raise RuntimeError("hfTestCrash: the trigger died right after StartExecution")
        async for event in super().run():
            yield event


async def _started(runner: Any) -> bool:
    """The lane's current row exists at Step Functions (`current` is set before the call)."""
    current = runner.current
    if current is None:
        return False
    found = await runner.hook.async_describe_execution(
        current.execution_arn or "", region=runner.stack.region
    )
    return found is not None


class CrashAfterStartRenderOperator(HyperframesLambdaRenderOperator):
    trigger_class: ClassVar[type[HyperframesRenderTrigger]] = CrashAfterStartTrigger
