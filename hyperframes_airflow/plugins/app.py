"""The batch view's FastAPI app: the page, its JSON, and the rows' outputs and poster frames.

Plugin apps are not authenticated by Airflow, so every route declares it: the batch routes
need read access to the DAG's task instances (`requires_access_dag`, the same check the REST
API makes; 401 without a token, 403 without access), the list of recent batches shows only the
DAGs the caller may read. Files are served only from the batch's own local root, objects only
through presigned URLs of the batch's own connection (`files.locate`). The documents carry row
positions, statuses and errors, never variables.

Built only in the api-server (`batch_view.HyperframesPlugin` imports this module only there:
every component imports plugins).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from hyperframes_airflow.contract.page import ROWS_SHOWN, build_page
from hyperframes_airflow.plugins.files import Refused, locate
from hyperframes_airflow.plugins.live import LambdaProgress
from hyperframes_airflow.plugins.reader import read_run, recent_batches
from hyperframes_airflow.plugins.urls import URL_PREFIX, base_path

__all__ = ["POLL_SECONDS", "build_app"]

#: How often the page asks for fresh rows while the run goes.
POLL_SECONDS = 3.0


@cache
def _static(name: str) -> str:
    return resources.files("hyperframes_airflow.plugins").joinpath("static", name).read_text()


def _html(name: str, config: dict[str, Any]) -> str:
    """A static page with its settings inlined as JSON (`<` escaped: no `</script>` break)."""
    blob = json.dumps(config).replace("<", "\\u003c")
    return _static(name).replace("__HF_CONFIG__", blob)


def build_app(progress: LambdaProgress | None = None) -> FastAPI:
    """The app mounted at `URL_PREFIX`; `app.state.read_ti` and `read_xcom` are the access
    checks (tests override them with `app.dependency_overrides`).

    :param progress: The Lambda progress cache (default: a new one).
    """
    live = progress or LambdaProgress()
    read_ti = requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)
    read_xcom = requires_access_dag("GET", DagAccessEntity.XCOM)  # the page is made of XComs
    app = FastAPI(title="HyperFrames batch view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.read_ti = read_ti
    app.state.read_xcom = read_xcom
    app.state.progress = live
    batch = APIRouter(dependencies=[Depends(read_ti), Depends(read_xcom)])

    def settings(**extra: Any) -> dict[str, Any]:
        base = base_path()
        return {
            "base": base,
            "prefix": f"{base}{URL_PREFIX}",
            "api": f"{base}/api/v2",
            "pollSeconds": POLL_SECONDS,
            **extra,
        }

    @batch.get("/batch/{dag_id}/{run_id}", response_class=HTMLResponse)
    def page(dag_id: str, run_id: str) -> str:
        return _html("batch.html", settings(dagId=dag_id, runId=run_id))

    @batch.get("/api/batch/{dag_id}/{run_id}")
    def document(
        dag_id: str,
        run_id: str,
        session: SessionDep,
        status: str | None = None,
        limit: int = Query(ROWS_SHOWN, ge=1, le=10 * ROWS_SHOWN),
    ) -> dict[str, Any]:
        data = read_run(session, dag_id, run_id)
        if data.run_state is None:
            raise HTTPException(404, f"no run {run_id!r} of DAG {dag_id!r}")
        now = datetime.now(UTC)
        groups = []
        for ids, inputs, arns in data.groups:
            if arns:
                inputs = replace(inputs, live={**inputs.live, **live.read(inputs.spec, arns)})
            built = build_page(
                inputs,
                now=now,
                render_task_id=ids.render,
                collect_task_id=ids.collect,
                status=status if status and status != "all" else None,
                limit=limit,
            )
            groups.append(built.model_dump(by_alias=True))
        return {
            "dagId": dag_id,
            "runId": run_id,
            "runState": data.run_state,
            "groups": groups,
            "updatedAt": now.isoformat(),
        }

    @batch.get("/batch/{dag_id}/{run_id}/{kind}/{group_id}/{line}")
    def row_file(
        dag_id: str, run_id: str, kind: str, group_id: str, line: int, session: SessionDep
    ) -> Response:
        if kind not in ("output", "thumbnail"):
            raise HTTPException(404, "no such file kind")
        data = read_run(session, dag_id, run_id)
        for ids, inputs, _ in data.groups:
            if ids.group_id != group_id:
                continue
            for rows in inputs.results.values():
                for row in rows:
                    if row.input_line != line:
                        continue
                    uri = row.output_uri if kind == "output" else row.thumbnail_uri
                    if kind == "output" and row.status != "succeeded":
                        break
                    try:
                        target = locate(uri, inputs.spec)
                    except Refused as exc:
                        raise HTTPException(404, str(exc)) from exc
                    if target.url is not None:
                        return RedirectResponse(target.url, status_code=307)
                    assert target.path is not None
                    if kind == "thumbnail":
                        return FileResponse(target.path, media_type="image/jpeg")
                    name = Path(row.output_key or target.path.name).name
                    return FileResponse(target.path, filename=name)
        raise HTTPException(404, f"line {line} has no {kind} yet")

    listing = APIRouter()

    @listing.get("/batches", response_class=HTMLResponse)
    def batches_page(user: GetUserDep) -> str:
        return _html("batches.html", settings())

    @listing.get("/api/batches")
    def batches(user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        return {"batches": recent_batches(session, readable)}

    app.include_router(batch)
    app.include_router(listing)
    return app
