"""`bash scripts/demo.sh --ui`: a real local Airflow stack with the demo batch and its page.

Starts the api-server, scheduler, dag-processor and triggerer (SQLite under `.airflow/ui/` in
the repo, the repo's `dags/`), creates the render pool, triggers `hyperframes_local_demo` and
prints the URL of its "HyperFrames batch" tab. Ctrl+C (or SIGTERM) stops every process it
started, renders included.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.airflow_stack import AirflowStack  # noqa: E402

DEMO = "hyperframes_local_demo"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    home = REPO / ".airflow" / "ui"
    env = {"HYPERFRAMES_LOCAL_ROOT": str(REPO / "output")}
    print("[demo --ui] starting Airflow (api-server, scheduler, dag-processor, triggerer)...")
    stack = AirflowStack(home, REPO / "dags", env=env)
    try:
        with stack:
            stack.create_pool("hyperframes_renders", 2, include_deferred=True)
            for dag_id in (DEMO, "hyperframes_notify"):
                stack.wait_for_dag(dag_id)
                stack.unpause(dag_id)
            run_id = stack.trigger(DEMO)
            page = f"{stack.base_url}/dags/{DEMO}/runs/{quote(run_id, safe='')}"
            took = stack.startup_seconds["total"]
            print(f"[demo --ui] Airflow:        {stack.base_url}  (up in {took} s)")
            print(f"[demo --ui] the batch view: {page}/plugin/hyperframes-batch")
            print(f"[demo --ui] all batches:    {stack.base_url}/plugin/hyperframes-batches")
            print(f"[demo --ui] logs: {stack.logs_dir}; videos: {env['HYPERFRAMES_LOCAL_ROOT']}")
            print("[demo --ui] Ctrl+C stops everything.")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        print("\n[demo --ui] stopping...")
    print(f"[demo --ui] stopped in {stack.stop_seconds} s; processes left: {len(stack.leftovers)}")
    return 0 if not stack.leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
