"""The batch view's app over real runs (`dag.test()`, real local renders), and a rerun of a
manifest's failed rows.

The app is the one the api-server mounts, called in-process with FastAPI's TestClient against
the test DB the runs wrote. Access control is the api-server's own `requires_access_dag`; here
it is overridden (the one thing mocked: there is no api-server auth manager in this process).
The real check, with real users and a real browser, is in `test_batch_view_stack.py`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.airflow_helpers import run_dag
from tests.flows.test_local_batch_dag import _dag


def _manifest(root: Path, dag_id: str) -> tuple[Path, dict[str, Any]]:
    [found] = sorted((root / "manifests" / dag_id).rglob("*.json"))
    data: dict[str, Any] = json.loads(found.read_text())
    return found, data


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_view_serves_a_real_run_and_a_rerun_of_its_manifest_renders_only_the_failed_row(
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    from hyperframes_airflow.plugins.app import build_app

    root = tmp_path / "root"
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        json.dumps({"outputKey": "v/ok.mp4", "variables": {"title": "Hi Private Ada"}})
        + "\n"
        + json.dumps({"outputKey": "v/blocked.mp4", "variables": {"title": "Hi Private Bo"}})
        + "\n"
    )
    (root / "v" / "blocked.mp4" / "in-the-way").mkdir(parents=True)
    first = run_dag(_dag("hf_view_first", batch, root))
    assert str(first.state) == "failed"
    manifest_file, manifest = _manifest(root, "hf_view_first")
    assert [r["status"] for r in manifest["rows"]] == ["succeeded", "failed"]

    app = build_app()
    app.dependency_overrides[app.state.read_ti] = lambda: None
    app.dependency_overrides[app.state.read_xcom] = lambda: None
    client = TestClient(app)
    run = quote(first.run_id, safe="")
    page = client.get(f"/batch/hf_view_first/{run}")
    assert page.status_code == 200 and "HyperFrames batch" in page.text
    doc = client.get(f"/api/batch/hf_view_first/{run}").json()
    assert doc["runState"] == "failed"
    [group] = doc["groups"]
    assert group["phase"] == "finished" and group["manifestUri"] == manifest_file.as_uri()
    assert [(r["line"], r["status"], r["hasOutput"]) for r in group["rows"]] == [
        (1, "succeeded", True),
        (2, "failed", False),
    ]
    assert group["rerun"] == {
        "rows": 1,
        "taskIds": [["render_batch.render", 1], "render_batch.collect_manifest"],
    }
    assert "Private" not in json.dumps(doc) and "Private" not in page.text

    output = client.get(f"/batch/hf_view_first/{run}/output/render_batch/1")
    assert output.status_code == 200
    assert output.content == (root / "v" / "ok.mp4").read_bytes()
    assert output.headers["content-disposition"].startswith("attachment")
    thumb = client.get(f"/batch/hf_view_first/{run}/thumbnail/render_batch/1")
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"  # a JPEG
    assert client.get(f"/batch/hf_view_first/{run}/output/render_batch/2").status_code == 404
    assert client.get(f"/batch/hf_view_first/{run}/secrets/render_batch/1").status_code == 404
    assert client.get(f"/api/batch/hf_view_first/{quote('no-such-run')}").status_code == 404

    # A new run of "the failed rows of run 1": only line 2, read again from the batch.
    shutil.rmtree(root / "v" / "blocked.mp4")
    ok_before = (root / "v" / "ok.mp4").stat().st_mtime_ns
    second = run_dag(
        _dag("hf_view_rerun", tmp_path / "not-read.jsonl", root, rerun_of=str(manifest_file))
    )
    assert str(second.state) == "success"
    _, rerun = _manifest(root, "hf_view_rerun")
    assert [(r["inputLine"], r["outputKey"], r["status"]) for r in rerun["rows"]] == [
        (2, "v/blocked.mp4", "succeeded")
    ]
    assert rerun["rerunOf"] == {
        "manifestUri": str(manifest_file),
        "dagId": "hf_view_first",
        "runId": first.run_id,
        "batchSource": str(batch),
        "lines": [2],
    }
    assert rerun["batchSource"] == str(batch)
    assert (root / "v" / "ok.mp4").stat().st_mtime_ns == ok_before  # not rendered again
    assert (root / "v" / "blocked.mp4").stat().st_size > 0
