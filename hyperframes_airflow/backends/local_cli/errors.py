"""What a local render raises, and what a successful one returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class LocalRenderError(RuntimeError):
    """A local render failed. `str(exc)` is one meaningful line; `log_tail` holds the context."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        log_tail: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.log_tail: list[str] = list(log_tail or [])


class LocalRenderTimeout(LocalRenderError):
    """The render exceeded its timeout; its whole process tree has been killed."""

    def __init__(self, message: str, *, timeout_s: float, log_tail: list[str] | None = None):
        super().__init__(message, returncode=None, log_tail=log_tail)
        self.timeout_s = timeout_s


class LocalToolchainError(LocalRenderError):
    """The local toolchain is incomplete; the message names the fix."""


@dataclass(frozen=True)
class LocalRenderResult:
    """What one successful render produced (measured with ffprobe, not taken on trust)."""

    output_path: Path
    bytes: int
    frames: int | None
    duration_s: float | None
    render_seconds: float
    """Wall-clock seconds of the whole CLI process, including Chrome start-up."""
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    cli_render_seconds: float | None = None
    """The CLI's own `rendered in N s` figure."""
    warnings: tuple[str, ...] = ()
    """Lint and capture warnings the CLI printed (the render still succeeded)."""
