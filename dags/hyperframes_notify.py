"""Deliver a finished batch: runs on the Asset event of the local demo's manifests.

Every `collect_manifest` that succeeds emits an event of its group's manifest Asset
(`manifest_asset(dag_id, group_id)`) with the manifest's URI, the run, totals by status and the
cost in its extra. This DAG is scheduled on the demo's Asset: it reads the manifest the event
names and lists the succeeded outputs, which is where a real digest would be mailed, posted
to a CRM or a webhook. Point `HYPERFRAMES_NOTIFY_DAG` at another batch DAG to follow that one.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.sdk import DAG, task

from hyperframes_airflow.operators.manifest import manifest_asset
from hyperframes_airflow.storage import read_text

WATCHED_DAG = os.environ.get("HYPERFRAMES_NOTIFY_DAG", "hyperframes_local_demo")
MANIFESTS = manifest_asset(WATCHED_DAG)

with DAG(
    dag_id="hyperframes_notify",
    schedule=[MANIFESTS],
    catchup=False,
    tags=["hyperframes", "example"],
    doc_md=__doc__,
):

    @task
    def deliver(**context: Any) -> dict[str, Any]:
        """The event's manifest, its succeeded outputs listed (a digest would be sent here)."""
        event = context["triggering_asset_events"][MANIFESTS][-1]
        extra = dict(event.extra)
        text = read_text(extra["manifest_uri"], conn_id=os.environ.get("HYPERFRAMES_CONN_ID"))
        manifest = json.loads(text or "{}")
        outputs = [
            {"line": row["inputLine"], "outputKey": row["outputKey"], "uri": row["outputUri"]}
            for row in manifest.get("rows", [])
            if row.get("status") == "succeeded"
        ]
        print(f"Batch {extra['dag_id']} / {extra['run_id']}: {extra['by_status']}")
        for output in outputs:
            print(f"  deliver line {output['line']}: {output['uri']}")
        return {"run_id": extra["run_id"], "manifest": extra["manifest_uri"], "outputs": outputs}

    deliver()
