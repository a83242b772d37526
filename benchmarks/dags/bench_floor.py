"""Airflow's own floor for a deferred render: an operator that defers at once to a trigger
that sleeps and then ends the task from the triggerer (no second worker launch, no AWS call).

Benchmark-only (importable by every stack component through the DAGs folder on PYTHONPATH):
whatever a real render path costs beyond this is ours to remove; this part is Airflow's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent


class SleepThenSucceedTrigger(BaseTrigger):
    """Sleep `seconds`, then end the task successfully from the triggerer.

    :param seconds: How long the "render" lasts.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"seconds": self.seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.seconds)
        yield TaskSuccessEvent()


class DeferAtOnceOperator(BaseOperator):
    """Defer straight away to `SleepThenSucceedTrigger` (the trigger ends the task).

    :param seconds: How long the trigger sleeps.
    """

    def __init__(self, *, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def execute(self, context: Context) -> None:
        self.defer(trigger=SleepThenSucceedTrigger(self.seconds), method_name="execute_complete")

    def execute_complete(self, context: Context, event: Any = None) -> None:
        """Only `dag.test()` comes back here; a triggerer ends the task itself."""
