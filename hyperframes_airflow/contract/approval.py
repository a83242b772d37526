"""Cost approval: who decides a batch whose estimate is above `max_cost_usd` (pure).

A blocked cost gate no longer fails the run. The batch waits for a person (a human-in-the-loop
task in Airflow's "Required actions") when a person can answer: a run somebody triggered. A run
nobody watches (scheduled, asset-triggered, a backfill) or one that cannot wait (`dag.test()`
never times a human-in-the-loop task out, so it would wait forever) decides at once from its
arguments, as before: `confirm_cost` renders, otherwise nothing renders. The decision is
recorded in the manifest (`Approval`), with who answered and when.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = [
    "APPROVAL_MODES",
    "DAG_TEST_USER",
    "Approval",
    "ApprovalMode",
    "Decision",
    "approval_text",
    "parse_approval_mode",
    "what_to_do",
]

#: `manual-runs`: a person approves runs a person triggered; other runs decide from arguments.
#: `always`: every blocked run waits for a person (a scheduled digest someone signs off).
#: `never`: no run waits; a blocked gate ends the run without rendering (the old behaviour).
ApprovalMode = Literal["manual-runs", "always", "never"]
APPROVAL_MODES: tuple[ApprovalMode, ...] = ("manual-runs", "always", "never")

#: The `triggering_user_name` Airflow gives `dag.test()` / `airflow dags test` runs.
DAG_TEST_USER = "dag_test"

#: What happened at the gate. `not-needed`: within budget, confirmed or no limit.
#: `not-asked`: blocked on a run nobody can answer in: not rendered.
Decision = Literal["not-needed", "approved", "rejected", "timed-out", "not-asked"]


class Approval(BaseModel):
    """The cost gate's outcome, as the manifest and the batch page show it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    decision: Decision
    message: str | None = None
    """The gate's own message: the estimate, its assumptions and the limit."""
    by: str | None = None
    """Who answered (a user name); None when nobody did."""
    at: str | None = None

    @property
    def renders(self) -> bool:
        return self.decision in ("not-needed", "approved")


def parse_approval_mode(value: Any) -> ApprovalMode:
    """A templated `cost_approval` value; blank means the default, anything unknown raises."""
    text = "" if value is None else str(value).strip().lower()
    if text in ("", "none"):
        return "manual-runs"
    for mode in APPROVAL_MODES:
        if text == mode:
            return mode
    raise ValueError(f"cost_approval must be one of {', '.join(APPROVAL_MODES)}; got {value!r}")


def what_to_do(
    *, blocked: bool, mode: ApprovalMode, run_type: str, triggering_user: str | None
) -> Literal["render", "ask", "reject"]:
    """`render` (the gate passed), `ask` a person, or `reject` without asking."""
    if not blocked:
        return "render"
    if mode == "never":
        return "reject"
    if mode == "always":
        return "ask"
    interactive = run_type.lower() == "manual" and triggering_user != DAG_TEST_USER
    return "ask" if interactive else "reject"


def approval_text(
    estimate: Mapping[str, Any] | None, *, timeout_text: str | None
) -> tuple[str, str]:
    """`(subject, Markdown body)` of the approval request: "N renders, estimated $X
    (assumptions...)", the limit, and what each answer does. No row data: only counts."""
    estimate = estimate or {}
    gate = estimate.get("gate") or {}
    rows = int(estimate.get("rows") or 0)
    renders = f"{rows} render{'' if rows == 1 else 's'}"
    cost = estimate.get("displayCost")
    limit = gate.get("maxCostUsd")
    limit_text = f"${limit:.4f}" if isinstance(limit, int | float) else "the limit"
    if cost:
        subject = f"Approve {renders}, estimated {cost} (max_cost_usd {limit_text})?"
    else:
        subject = f"Approve {renders} of unknown cost (max_cost_usd {limit_text})?"
    lines = [str(gate.get("message") or subject), ""]
    assumptions = [str(a) for a in estimate.get("assumptions") or []]
    if assumptions:
        lines += ["Assumptions:", *[f"- {a}" for a in assumptions], ""]
    lines.append("**Approve** deploys the project and renders every row.")
    lines.append(
        "**Reject** ends the run without rendering; the manifest lists every row as skipped."
    )
    if timeout_text:
        lines.append(f"No answer within {timeout_text} rejects.")
    return subject, "\n".join(lines)
