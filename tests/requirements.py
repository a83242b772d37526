"""What a test needs from the machine, and what happens when it is missing.

Outside the project's own test command a missing tool skips the test with the reason (and the
fix). `scripts/test.sh` installs every tool first and sets `HYPERFRAMES_REQUIRE_RENDERER=1`
(as does CI with `CI=true`): there a missing tool fails, so the suite cannot pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from hyperframes_airflow.backends.local_cli import Toolchain, find_toolchain

__all__ = ["missing", "need", "render_toolchain", "tools_required"]


def tools_required() -> bool:
    return (
        os.environ.get("CI", "").lower() in ("1", "true")
        or os.environ.get("HYPERFRAMES_REQUIRE_RENDERER") == "1"
    )


def missing(reason: str) -> NoReturn:
    """Fail (tools required) or skip with `reason`."""
    if tools_required():
        pytest.fail(reason)
    pytest.skip(reason)


def need(reason: str | None) -> None:
    """Nothing when `reason` is None; else `missing(reason)`."""
    if reason:
        missing(reason)


def render_toolchain() -> Toolchain:
    """The local render toolchain, or `need` with what is missing and its fix."""
    found = find_toolchain()
    problems = found.problems()
    need(
        "local renderer not installed: "
        + "; ".join(f"{what} (fix: {fix})" for what, fix in problems)
        if problems
        else None
    )
    return found
