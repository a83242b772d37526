"""Stand up a fake HyperFrames render stack on a moto server, for a trial with no AWS account.

Used by the `moto` profile of docker/docker-compose.yaml (then `init.sh` writes the connection),
and runnable by hand against any moto server:

    export AWS_ENDPOINT_URL=http://127.0.0.1:5000 HYPERFRAMES_BUCKET=my-render-bucket
    export HYPERFRAMES_STATE_MACHINE_ARN=arn:aws:states:us-east-1:123456789012:stateMachine:x
    python docker/moto-stack.py examples/batches/welcome.jsonl

It creates the bucket and the state machine named by the same variables `init.sh` reads, so the
connection and the stack cannot disagree, and uploads each batch file given to
`s3://<bucket>/batches/<file name>`. The state machine is the test suite's stand-in
(`devstack/moto_stack.py`): the HyperFrames v2 topology with Pass states instead of Lambdas, so
renders "succeed" in a second and write no video. Idempotent: an existing bucket is kept and an
existing state machine gets the current definition.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo (or /opt/hyperframes)
from devstack.moto_stack import render_stack_definition

ARN_RE = re.compile(
    r"arn:aws:states:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):stateMachine:(?P<name>[^:\s]+)"
)


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"[moto-stack] ERROR: set {name}")
    return value


def _wait_ready(endpoint: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/config", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                sys.exit(f"[moto-stack] ERROR: no moto server at {endpoint}")
            time.sleep(0.5)


def main(batch_files: list[str]) -> None:
    endpoint = _env("AWS_ENDPOINT_URL").rstrip("/")
    bucket = _env("HYPERFRAMES_BUCKET")
    arn = _env("HYPERFRAMES_STATE_MACHINE_ARN")
    match = ARN_RE.fullmatch(arn)
    if match is None:
        sys.exit(f"[moto-stack] ERROR: not a state machine ARN: {arn}")
    region = match["region"]
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("HYPERFRAMES_AWS_ACCESS_KEY_ID") or "testing",
        aws_secret_access_key=os.environ.get("HYPERFRAMES_AWS_SECRET_ACCESS_KEY") or "testing",
        region_name=region,
    )

    _wait_ready(endpoint)
    # Real ASL execution; must precede the state machine (moto keeps it in a separate store).
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()

    s3 = session.client("s3", endpoint_url=endpoint)
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    for path in map(Path, batch_files):
        s3.put_object(Bucket=bucket, Key=f"batches/{path.name}", Body=path.read_bytes())
        print(f"[moto-stack] s3://{bucket}/batches/{path.name}")

    sfn = session.client("stepfunctions", endpoint_url=endpoint)
    definition = json.dumps(render_stack_definition())
    existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    if match["name"] in existing:
        sfn.update_state_machine(stateMachineArn=existing[match["name"]], definition=definition)
        created = existing[match["name"]]
    else:
        role = f"arn:aws:iam::{match['account']}:role/hyperframes-moto-trial"
        created = sfn.create_state_machine(
            name=match["name"], definition=definition, roleArn=role, type="STANDARD"
        )["stateMachineArn"]
    if created != arn:
        sys.exit(f"[moto-stack] ERROR: moto created {created}, not {arn} (account or region?)")
    print(f"[moto-stack] ready: bucket {bucket}, state machine {arn}")


if __name__ == "__main__":
    main(sys.argv[1:])
