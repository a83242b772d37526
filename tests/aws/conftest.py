"""The `moto` fixture of the Step Functions tests: the shared moto server, left clean."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.moto_stack import MotoStack


@pytest.fixture
def moto(hf_conn: MotoStack) -> Iterator[MotoStack]:
    """`hf_conn`'s server; no hanging render is left behind in it for the next test."""
    yield hf_conn
    sfn = hf_conn.boto3_client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=hf_conn.state_machine_arn, statusFilter="RUNNING")
    for execution in listed["executions"]:
        sfn.stop_execution(executionArn=execution["executionArn"])
