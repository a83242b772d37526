#!/usr/bin/env bash
# The main job, from a fresh clone: install everything, set up a SQLite Airflow home inside the
# repo with the render pool, and render the example batch through Airflow on this machine.
#   --ui: instead, start a real local Airflow (api-server, scheduler, dag-processor, triggerer),
#         trigger the demo batch and print the URL of its batch view; Ctrl+C stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
if [ "${1:-}" = "--ui" ]; then
  exec .venv/bin/python scripts/demo_ui.py
fi
T0=$(date +%s)
airflow db migrate >/dev/null
airflow pools set hyperframes_renders 2 "HyperFrames renders (counts deferred tasks)" \
  --include-deferred >/dev/null
echo "[demo] airflow dags test hyperframes_local_demo"
RUN_LOG="$AIRFLOW_HOME/demo-last-run.log"
set +e
airflow dags test hyperframes_local_demo >"$RUN_LOG" 2>&1
RC=$?
set -e
OUT="${HYPERFRAMES_LOCAL_ROOT:-$ROOT/output}"
# manifests/<dag_id>/<group_id>/<run>.json: the newest is this run's.
MANIFEST=$(ls -t "$OUT"/manifests/hyperframes_local_demo/*/*.json 2>/dev/null | head -1 || true)
if [ -n "$MANIFEST" ]; then
  .venv/bin/python - "$MANIFEST" "$OUT" <<'PY'
import json, sys
manifest, root = json.load(open(sys.argv[1])), sys.argv[2]
print(f"[demo] manifest: {sys.argv[1]}")
print(f"[demo] totals: {manifest['totals']['byStatus']}")
for row in manifest["rows"]:
    where = row.get("outputUri") or row.get("error") or ""
    print(f"[demo]   line {row['inputLine']:>3}  {row['status']:<10} {where}")
PY
fi
echo "[demo] full Airflow log: $RUN_LOG  (wall $(( $(date +%s) - T0 )) s)"
if [ "$RC" -ne 0 ]; then tail -40 "$RUN_LOG"; echo "[demo] FAILED (exit $RC)"; exit "$RC"; fi
