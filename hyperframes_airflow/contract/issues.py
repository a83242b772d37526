"""One problem found in a batch, a row or a config, located by physical line and field.

Every validator in the contract core reports problems as `Issue`s so the CLI, `prepare_batch`
and the manifest can show them the same way: all at once, each naming its line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Issue:
    """A validation finding. `line` is the 1-based physical line in the batch file (None for
    batch-level problems); `field` is the JSON field concerned (e.g. `outputKey`)."""

    line: int | None
    field: str | None
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "batch"
        if self.field:
            where += f", {self.field}"
        return f"{where}: {self.message}"


class BatchValidationError(ValueError):
    """Raised when a batch must not render; carries every issue, not just the first."""

    def __init__(self, issues: list[Issue], *, summary: str = "Batch validation failed") -> None:
        self.issues = issues
        errors = [i for i in issues if i.severity == "error"]
        lines = "\n".join(f"  - {i}" for i in errors)
        super().__init__(f"{summary}: {len(errors)} error(s)\n{lines}")
