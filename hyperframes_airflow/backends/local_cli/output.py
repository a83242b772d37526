"""Reading the CLI's output: progress events, warnings, and the one line that says why it failed."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ProgressCallback = Callable[[str], None]
_MAX_MESSAGE_CHARS = 500


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_BAR = re.compile(r"^\s*[\u2588\u2591]+\s+(\d+)%\s+(.*?)\s*$")
_MACHINE_PROGRESS = "@hf-progress "
_FAIL = re.compile(r"^\s*\u2717\s+(.*?)\s*$")  # "✗  Render failed"
_VARIABLE_ISSUE = re.compile(r'^\s*(Variable ".*)$')
_RENDERED_IN = re.compile(r"rendered in ([\d.]+)s")
_WARNING = re.compile(r"^\s+(Lint: .*|\[[a-z0-9_]+\] .*)$")  # the CLI indents its warnings
#: Lines that state an error in the CLI's own words (safe to show: they quote no variables).
_ERROR_LINE = re.compile(
    r"^((?:[A-Z][A-Za-z]*)?Error: .*|Error \[[A-Z_]+\].*|Render cancelled: .*"
    r"|HyperFrames requires .*)$"
)


def clean_line(raw: str) -> str:
    """Strip ANSI/cursor codes and the carriage-return redraws a spinner leaves behind."""
    line = _ANSI.sub("", raw.rstrip("\r\n"))
    if "\r" in line:
        line = line.rsplit("\r", 1)[-1]
    return line.rstrip()


@dataclass
class _ProgressState:
    """Turns the CLI's `@hf-progress` stream into occasional human lines."""

    callback: ProgressCallback | None
    interval_s: float
    label: str = ""
    last_pct: int | None = None
    last_emit: float = field(default=float("-inf"))
    frames_total: int | None = None

    def feed(self, line: str) -> None:
        bar = _BAR.match(line)
        if bar:
            self.label = bar[2]
            return
        if not line.startswith(_MACHINE_PROGRESS):
            return
        try:
            event = json.loads(line[len(_MACHINE_PROGRESS) :])
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        pct = event.get("pct")
        if not isinstance(pct, int | float):
            return
        if event.get("code") == "capture" and isinstance(event.get("total"), int):
            self.frames_total = int(event["total"])
        self._maybe_emit(int(pct))

    def _maybe_emit(self, pct: int) -> None:
        if self.callback is None or pct == self.last_pct:
            return
        now = time.monotonic()
        if pct < 100 and self.last_pct is not None and now - self.last_emit < self.interval_s:
            return
        self.last_pct, self.last_emit = pct, now
        self.callback(f"{pct}% {self.label}".rstrip())

    def finish(self) -> None:
        """Report 100% once on success even if the throttle swallowed the last event."""
        if self.last_pct != 100 and self.callback is not None:
            self.last_pct = 100
            self.callback("100% Render complete")


def failure_message(lines: list[str], returncode: int | None) -> str:
    """The first meaningful line of a failed render's output, not the engine log."""
    issues = [m[1] for line in lines if (m := _VARIABLE_ISSUE.match(line))]
    fail_index = next((i for i in range(len(lines) - 1, -1, -1) if _FAIL.match(lines[i])), None)
    if issues and fail_index is not None and "Variable validation failed" in lines[fail_index]:
        return _clip("; ".join(dict.fromkeys(issues)))
    if fail_index is not None:
        match = _FAIL.match(lines[fail_index])
        head = match[1] if match else "Render failed"
        detail = next(
            (
                s
                for s in (x.strip() for x in lines[fail_index + 1 :])
                if s and not s.startswith(("Try --docker", "Run npx hyperframes"))
            ),
            "",
        )
        return _clip(f"{head}: {detail}" if detail else head)
    errors = [m[1] for s in lines if (m := _ERROR_LINE.match(s.strip()))]
    if errors:
        return _clip(errors[-1])
    # No error line: the CLI died (OOM kill, SIGKILL) or failed silently. Never fall back to
    # other output lines: warnings quote the composition's text, i.e. variable values.
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"hyperframes render was killed by {name} (out of memory, or stopped from outside)"
    return f"hyperframes render exited with code {returncode}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"
