"""Who decides a batch above its cost limit, and what the approver is shown."""

from __future__ import annotations

import pytest

from hyperframes_airflow.contract.approval import (
    DAG_TEST_USER,
    Approval,
    approval_text,
    parse_approval_mode,
    what_to_do,
)
from hyperframes_airflow.contract.assemble import gate_problem, settle_report
from hyperframes_airflow.contract.rows import BatchReport


@pytest.mark.parametrize(
    ("mode", "run_type", "user", "expected"),
    [
        ("manual-runs", "manual", "ada", "ask"),
        ("manual-runs", "scheduled", None, "reject"),
        ("manual-runs", "asset_triggered", None, "reject"),
        ("manual-runs", "backfill", "ada", "reject"),
        ("manual-runs", "manual", DAG_TEST_USER, "reject"),  # dag.test() never times out
        ("always", "scheduled", None, "ask"),
        ("never", "manual", "ada", "reject"),
    ],
)
def test_a_blocked_gate_asks_only_where_a_person_can_answer(
    mode: str, run_type: str, user: str | None, expected: str
) -> None:
    assert (
        what_to_do(
            blocked=True, mode=parse_approval_mode(mode), run_type=run_type, triggering_user=user
        )
        == expected
    )
    assert (
        what_to_do(blocked=False, mode="always", run_type=run_type, triggering_user=user)
        == "render"
    )


def test_approval_mode_blank_is_the_default_and_unknown_raises() -> None:
    assert parse_approval_mode("") == parse_approval_mode(None) == "manual-runs"
    assert parse_approval_mode(" Always ") == "always"
    with pytest.raises(ValueError, match="cost_approval must be one of"):
        parse_approval_mode("sometimes")


def test_the_request_states_renders_estimate_assumptions_and_what_each_answer_does() -> None:
    estimate = {
        "rows": 3,
        "displayCost": "$0.0117",
        "assumptions": ["canvas: 640x360", "frames: 60 frames per render"],
        "gate": {"maxCostUsd": 0.0001, "message": "3 renders, estimated $0.0117 (assumptions: x)"},
    }
    subject, body = approval_text(estimate, timeout_text="24 hours")
    assert subject == "Approve 3 renders, estimated $0.0117 (max_cost_usd $0.0001)?"
    assert body.startswith("3 renders, estimated $0.0117 (assumptions: x)")
    assert "- canvas: 640x360" in body and "No answer within 24 hours rejects." in body
    assert "**Reject** ends the run without rendering" in body


def test_an_answer_settles_the_report_and_a_rejection_is_a_gate_problem() -> None:
    report = BatchReport(status="needs-approval", backend="lambda", source="s3://b/x.jsonl")
    assert settle_report(report, None) is report
    approved = Approval(decision="approved", by="ada", message="m")
    assert settle_report(report, approved).status == "planned"  # type: ignore[union-attr]
    assert gate_problem(approved) is None
    for decision in ("rejected", "timed-out", "not-asked"):
        answer = Approval.model_validate(
            {"decision": decision, "by": "bob", "message": "3 renders, estimated $1."}
        )
        assert settle_report(report, answer).status == "over-budget"  # type: ignore[union-attr]
        problem = gate_problem(answer)
        assert problem is not None and problem["field"] == "max_cost_usd"
        assert str(problem["message"]).startswith("3 renders, estimated $1.")
    rejected = gate_problem(Approval(decision="rejected", by="bob"))
    assert rejected is not None and "Rejected by bob" in str(rejected["message"])
