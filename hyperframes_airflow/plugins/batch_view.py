"""`HyperframesPlugin`: the batch view's tab, nav entry and (in the api-server only) its app.

Every Airflow component imports plugins (task processes included), so this module builds
nothing at import: the FastAPI app exists only when the process is the api-server
(`airflow api-server`, or `HYPERFRAMES_BATCH_VIEW_APP=1` for an embedding that is not).
The tab shows on every DAG run (Airflow has no per-DAG filter for plugin tabs); a run without
a render_batch group says so.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from hyperframes_airflow.plugins.urls import URL_PREFIX, base_path

__all__ = ["TAB_ROUTE", "HyperframesPlugin", "in_api_server"]

#: The tab's route: `/dags/<dag>/runs/<run>/plugin/hyperframes-batch`.
TAB_ROUTE = "hyperframes-batch"
NAV_ROUTE = "hyperframes-batches"


def in_api_server() -> bool:
    """True in the process that serves the API (the only one that needs the app)."""
    if os.environ.get("HYPERFRAMES_BATCH_VIEW_APP") == "1":
        return True
    return len(sys.argv) > 1 and sys.argv[1] == "api-server"


def _fastapi_apps() -> list[dict[str, Any]]:
    if not in_api_server():
        return []
    from hyperframes_airflow.plugins.app import build_app

    return [{"app": build_app(), "url_prefix": URL_PREFIX, "name": "HyperFrames batch view"}]


def _external_views() -> list[dict[str, Any]]:
    prefix = f"{base_path()}{URL_PREFIX}"
    return [
        {
            "name": "HyperFrames batch",
            "href": f"{prefix}/batch/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": TAB_ROUTE,
        },
        {
            "name": "HyperFrames batches",
            "href": f"{prefix}/batches",
            "destination": "nav",
            "url_route": NAV_ROUTE,
            "category": "browse",
        },
    ]


class HyperframesPlugin(AirflowPlugin):
    """The batch as a page: rows, live progress, cost, thumbnails, outputs, rerun failed rows."""

    name = "hyperframes"
    external_views = _external_views()
    fastapi_apps = _fastapi_apps()
