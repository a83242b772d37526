#!/usr/bin/env bash
# One-shot, idempotent set-up of an Airflow deployment for hyperframes-airflow. Run it after every
# deploy or upgrade: in docker compose (the airflow-init service), as a Kubernetes Job, or on a
# plain machine with `airflow` on PATH and AIRFLOW_HOME set.
#
#   1. airflow db migrate
#   2. the render pool, created or updated with --include-deferred (slots cap running renders)
#   3. the stack connection, from environment variables, created or replaced in one transaction
#
# Environment (all optional; the connection is skipped when no stack is named):
#   HYPERFRAMES_POOL=hyperframes_renders  HYPERFRAMES_POOL_SLOTS=4
#   HYPERFRAMES_CONN_ID=hyperframes_default
#   HYPERFRAMES_BUCKET + HYPERFRAMES_STATE_MACHINE_ARN   the stack, directly; or
#   HYPERFRAMES_STACK_NAME                               a CloudFormation stack's outputs; or
#   HYPERFRAMES_STATE_FILE                               the CLI's lambda-stack-<name>.json
#   HYPERFRAMES_LAMBDA_MEMORY_MB, HYPERFRAMES_RESERVED_CONCURRENCY   sizing (cost, pool advice)
#   AWS_REGION (or AWS_DEFAULT_REGION)                   region_name of the connection
#   AWS_ENDPOINT_URL                                     endpoint_url (moto, LocalStack, VPC)
#   HYPERFRAMES_AWS_ACCESS_KEY_ID + HYPERFRAMES_AWS_SECRET_ACCESS_KEY
#       static keys stored in the connection; leave unset to use the default credential chain
#       (instance profile, IRSA, AWS_* variables), which is what production should do
#   HYPERFRAMES_SKIP_MIGRATE=true                        skip step 1 (someone else migrates)
set -euo pipefail

log() { echo "[hyperframes-init] $*"; }
die() { echo "[hyperframes-init] ERROR: $*" >&2; exit 2; }

command -v airflow >/dev/null 2>&1 || die "airflow is not on PATH"
PYTHON="${HYPERFRAMES_PYTHON:-$(command -v python3 || command -v python || true)}"
[ -n "$PYTHON" ] || die "python3 is not on PATH"

POOL="${HYPERFRAMES_POOL:-hyperframes_renders}"
SLOTS="${HYPERFRAMES_POOL_SLOTS:-4}"
CONN_ID="${HYPERFRAMES_CONN_ID:-hyperframes_default}"
if ! [[ "$SLOTS" =~ ^[1-9][0-9]*$ ]]; then
  die "HYPERFRAMES_POOL_SLOTS must be a positive integer; got '$SLOTS'"
fi

# The connection as an `airflow connections import` document; stdlib only, no Airflow import.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"
set +e
summary="$("$PYTHON" - "$CONN_ID" "$tmp/connection.json" <<'PY'
import json
import os
import re
import sys

conn_id, out = sys.argv[1], sys.argv[2]
env = {k: v.strip() for k, v in os.environ.items() if v.strip()}
bucket = env.get("HYPERFRAMES_BUCKET")
arn = env.get("HYPERFRAMES_STATE_MACHINE_ARN")
stack = env.get("HYPERFRAMES_STACK_NAME")
state_file = env.get("HYPERFRAMES_STATE_FILE")
region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")


def fail(message):
    print(f"[hyperframes-init] ERROR: {message}", file=sys.stderr)
    sys.exit(2)


sources = [
    name
    for name, given in (
        ("HYPERFRAMES_BUCKET/HYPERFRAMES_STATE_MACHINE_ARN", bool(bucket or arn)),
        ("HYPERFRAMES_STACK_NAME", bool(stack)),
        ("HYPERFRAMES_STATE_FILE", bool(state_file)),
    )
    if given
]
if not sources:
    sys.exit(3)  # no stack named: nothing to write
if len(sources) > 1:
    fail(f"set only one of {', '.join(sources)}: they are alternative ways to find the stack")

extra = {}
if bucket or arn:
    if not (bucket and arn):
        fail("set both HYPERFRAMES_BUCKET and HYPERFRAMES_STATE_MACHINE_ARN")
    if "/" in bucket or bucket.startswith("s3:"):
        fail(f"HYPERFRAMES_BUCKET must be a bare bucket name (no s3://, no path); got {bucket!r}")
    match = re.fullmatch(
        r"arn:aws[a-z-]*:states:([a-z0-9-]+):\d{12}:stateMachine:[^:\s]+", arn
    )
    if match is None:
        fail(
            "HYPERFRAMES_STATE_MACHINE_ARN must look like "
            f"arn:aws:states:<region>:<account>:stateMachine:<name>; got {arn!r}"
        )
    if region and region != match[1]:
        fail(f"the state machine is in {match[1]} but AWS_REGION is {region}")
    region = region or match[1]
    extra.update(bucket_name=bucket, state_machine_arn=arn)
elif stack:
    extra["stack_name"] = stack
else:
    extra["state_file"] = state_file
if region:
    extra["region_name"] = region
if env.get("AWS_ENDPOINT_URL"):
    extra["endpoint_url"] = env["AWS_ENDPOINT_URL"]
for var, key in (
    ("HYPERFRAMES_LAMBDA_MEMORY_MB", "lambda_memory_mb"),
    ("HYPERFRAMES_RESERVED_CONCURRENCY", "reserved_concurrency"),
):
    if var in env:
        if not re.fullmatch(r"-?\d+", env[var]):
            fail(f"{var} must be an integer; got {env[var]!r}")
        extra[key] = int(env[var])

conn = {"conn_type": "aws", "extra": json.dumps(extra)}  # a string keeps the JSON types
key_id = env.get("HYPERFRAMES_AWS_ACCESS_KEY_ID")
secret = env.get("HYPERFRAMES_AWS_SECRET_ACCESS_KEY")
if bool(key_id) != bool(secret):
    fail("set both HYPERFRAMES_AWS_ACCESS_KEY_ID and HYPERFRAMES_AWS_SECRET_ACCESS_KEY, or neither")
if key_id:
    conn.update(login=key_id, password=secret)
with open(out, "w", encoding="utf-8") as handle:
    json.dump({conn_id: conn}, handle)
print(", ".join(f"{key}={value}" for key, value in extra.items()))
PY
)"
rc=$?
set -e
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || exit "$rc"  # bad settings: fail before touching anything

if [ "${HYPERFRAMES_SKIP_MIGRATE:-false}" = "true" ]; then
  log "skipping airflow db migrate (HYPERFRAMES_SKIP_MIGRATE=true)"
else
  log "airflow db migrate"
  airflow db migrate
fi

log "pool $POOL: $SLOTS slots, include_deferred"
airflow pools set "$POOL" "$SLOTS" \
  "HyperFrames renders: slots cap running renders (deferred ones included)" \
  --include-deferred >/dev/null

if [ "$rc" -eq 3 ]; then
  log "no stack named (HYPERFRAMES_BUCKET/_STATE_MACHINE_ARN, _STACK_NAME or _STATE_FILE):" \
    "connection $CONN_ID left as it is (fine for the local backend)"
  exit 0
fi

# `import --overwrite` updates an existing row in place, in one transaction: tasks never see the
# connection missing, as they could between `connections delete` and `connections add`.
log "connection $CONN_ID (aws): $summary"
airflow connections import --overwrite "$tmp/connection.json" >/dev/null

env_var="AIRFLOW_CONN_$(echo "$CONN_ID" | tr '[:lower:]' '[:upper:]')"
if [ -n "${!env_var:-}" ]; then
  log "WARNING: $env_var is set; it takes precedence over the connection stored in the database"
fi
log "done"
