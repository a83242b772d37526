"""What every devstack server shares: `with Server(...) as s:` starts it and always stops it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Self

__all__ = ["Service", "terminate_group"]


def terminate_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM `proc`'s process group (it was started in its own session), then SIGKILL it
    if it has not exited within `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


class Service:
    """Start on enter, stop on exit; a start that fails half-way stops what it had started, so
    a failed fixture leaves no process behind."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
