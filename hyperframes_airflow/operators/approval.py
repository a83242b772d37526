"""`approve_cost`: a person approves a batch whose estimate is above `max_cost_usd`.

Between prepare_batch and deploy_site. Within budget (or confirmed, or no limit) it returns at
once. Above it, on a run a person triggered, it asks in Airflow's "Required actions" (an
`ApprovalOperator`: the task waits in `awaiting_input`, holding no worker and no pool slot):
"N renders, estimated $X (assumptions...)". Approve renders; Reject, or no answer within the
timeout, skips deploy and renders, and collect_manifest writes the manifest (rows `skipped`).
Runs nobody can answer in decide at once (`contract.approval.what_to_do`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context, timezone

from hyperframes_airflow.contract.approval import (
    Approval,
    approval_text,
    parse_approval_mode,
    what_to_do,
)
from hyperframes_airflow.contract.rows import BatchReport
from hyperframes_airflow.xcom import APPROVAL_KEY, REPORT_KEY

__all__ = ["HyperframesCostApprovalOperator"]


class HyperframesCostApprovalOperator(ApprovalOperator):
    """Approve (or not) a batch whose estimated cost is above its limit; pushes the decision
    (`contract.approval.Approval`, XCom `approval`), which collect_manifest records.

    :param prepare_task_id: The prepare_batch task whose `report` holds the estimate and gate.
    :param cost_approval: `manual-runs` (default: runs a person triggered wait for an answer,
        others do not render), `always` (every blocked run waits) or `never` (none waits).
    :param response_timeout: How long a person has to answer; no answer rejects.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "cost_approval")
    ui_color = "#fff4e5"

    def __init__(
        self,
        *,
        prepare_task_id: str,
        cost_approval: str = "manual-runs",
        response_timeout: timedelta = timedelta(hours=24),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Approve the estimated cost of this HyperFrames batch?")
        super().__init__(
            defaults=ApprovalOperator.REJECT, response_timeout=response_timeout, **kwargs
        )
        self.prepare_task_id = prepare_task_id
        self.cost_approval = cost_approval

    def _report(self, context: Context) -> BatchReport | None:
        raw = context["ti"].xcom_pull(task_ids=self.prepare_task_id, key=REPORT_KEY)
        return BatchReport.model_validate(raw) if raw else None

    @staticmethod
    def _gate_message(report: BatchReport | None) -> str | None:
        gate = ((report.estimate or {}).get("gate") or {}) if report is not None else {}
        message = gate.get("message")
        return str(message) if message else None

    def execute(self, context: Context) -> Any:
        report = self._report(context)
        message = self._gate_message(report)
        run = context["dag_run"]
        run_type = getattr(run.run_type, "value", run.run_type)
        todo = what_to_do(
            blocked=report is not None and report.status == "needs-approval",
            mode=parse_approval_mode(self.cost_approval),
            run_type=str(run_type),
            triggering_user=run.triggering_user_name,
        )
        if todo == "render":
            return self._record(context, Approval(decision="not-needed", message=message))
        if todo == "reject":
            self.log.error("Cost gate: %s. Not rendering: nobody can approve this run.", message)
            self._record(context, Approval(decision="not-asked", message=message))
            # Skip deploy and renders exactly as a Reject does (this raises to skip them).
            return ApprovalOperator.execute_complete(
                self,
                context,
                {
                    "chosen_options": [self.REJECT],
                    "params_input": {},
                    "responded_at": timezone.utcnow(),
                    "responded_by_user": None,
                },
            )
        timeout = self.response_timeout
        self.subject, self.body = approval_text(
            report.estimate if report else None,
            timeout_text=_duration(timeout) if timeout else None,
        )
        self.log.info("Cost gate: %s. Waiting for a person to approve.", message)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            chosen = list(event.get("chosen_options") or [])
            self.validate_chosen_options(chosen)
            user = event.get("responded_by_user") or {}
            if chosen[:1] == [self.APPROVE]:
                decision = "approved"
            elif event.get("timedout"):
                decision = "timed-out"
            else:
                decision = "rejected"
            responded = event.get("responded_at")
            approval = Approval(
                decision=decision,  # type: ignore[arg-type]
                message=self._gate_message(self._report(context)),
                by=(user.get("name") or user.get("id")) if isinstance(user, dict) else None,
                at=responded.isoformat() if isinstance(responded, datetime) else responded,
            )
            self.log.info(
                "Cost approval: %s%s", decision, f" by {approval.by}" if approval.by else ""
            )
            self._record(context, approval)
        return super().execute_complete(context, event)  # a Reject skips deploy and renders

    def _record(self, context: Context, approval: Approval) -> dict[str, Any]:
        value = approval.model_dump(by_alias=True)
        context["ti"].xcom_push(key=APPROVAL_KEY, value=value)
        return value


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'' if hours == 1 else 's'}"
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
