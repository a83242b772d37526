"""The whole batch flow through real Airflow (`dag.test()`, SQLite) on the local backend.

Renders are real (hyperframes CLI + Debian chromium + ffmpeg) and checked with ffprobe and a
decoded pixel, as a user would check them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_helpers import run_dag, ti_states
from tests.conftest import REPO

TEMPLATE = REPO / "examples" / "templates" / "welcome"


def _dag(dag_id: str, batch: Path, root: Path, **options: Any) -> Any:
    from airflow.sdk import DAG

    from hyperframes_airflow.batch import render_batch
    from hyperframes_airflow.contract.config import RenderConfig

    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        render_batch(
            project_dir=str(TEMPLATE),
            batch=str(batch),
            config=RenderConfig(width=640, height=360, fps=30),
            backend="local",
            local_root=str(root),
            **options,
        )
    return dag


def _write_batch(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def _manifest(root: Path, dag_id: str) -> dict[str, Any]:
    found = sorted((root / "manifests" / dag_id).rglob("*.json"))
    assert len(found) == 1, found
    data: dict[str, Any] = json.loads(found[0].read_text())
    return data


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_renders_every_valid_row_and_reports_the_invalid_one(tmp_path: Path) -> None:
    from hyperframes_airflow.backends.local_cli import frame_rgb, probe_video

    batch = _write_batch(
        tmp_path / "batch.jsonl",
        [
            {"outputKey": "out/ada.mp4", "variables": {"title": "Hi Ada", "accent": "#ff0000"}},
            "",
            {"outputKey": "out/bad.mov", "variables": {"title": "wrong extension"}},
            {"outputKey": "out/lin.mp4", "variables": {"title": "Hi Lin", "accent": "#0000ff"}},
        ],
    )
    root = tmp_path / "root"
    dag = _dag("hf_local_rows", batch, root, strict=False)
    run = run_dag(dag)

    # The run tells the truth: one row did not render, so the run failed, after the manifest.
    assert str(run.state) == "failed"
    manifest = _manifest(root, "hf_local_rows")
    rows = {r["inputLine"]: r for r in manifest["rows"]}
    assert list(rows) == [1, 3, 4]
    assert rows[3]["status"] == "invalid" and ".mp4" in rows[3]["error"]
    assert rows[1]["status"] == rows[4]["status"] == "succeeded"
    assert manifest["totals"]["byStatus"] == {"succeeded": 2, "invalid": 1}
    # No personal data copied into the manifest.
    assert "Hi Ada" not in json.dumps(manifest) and "variables" not in manifest["rows"][0]

    colours = {}
    for line, expected in ((1, (255, 0, 0)), (4, (0, 0, 255))):
        video = root / rows[line]["outputKey"]
        assert rows[line]["outputUri"] == video.as_uri()
        info = probe_video(video)
        assert info["codec_name"] == "h264"
        assert (info["width"], info["height"]) == (640, 360)
        assert abs(float(info["duration"]) - 2.0) < 0.1
        colours[line] = frame_rgb(video, 1.0, 16, 16)
        assert all(abs(a - b) <= 24 for a, b in zip(colours[line], expected, strict=True))
    assert colours[1] != colours[4]

    # The site was deployed once, content-addressed like the bucket.
    assert [p.name for p in (root / "sites").iterdir()] == [manifest["siteId"]]
    states = ti_states(run)
    assert states[("render_batch.collect_manifest", -1)] == "failed"
    assert states[("render_batch.render", 0)] == states[("render_batch.render", 1)] == "success"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dry_run_validates_and_renders_nothing(tmp_path: Path) -> None:
    batch = _write_batch(
        tmp_path / "batch.jsonl",
        [{"outputKey": f"out/{i}.mp4", "variables": {"title": f"T{i}"}} for i in range(3)],
    )
    root = tmp_path / "root"
    run = run_dag(_dag("hf_local_dry", batch, root, dry_run=True))

    assert str(run.state) == "success"
    manifest = _manifest(root, "hf_local_dry")
    assert manifest["dryRun"] is True
    assert [r["status"] for r in manifest["rows"]] == ["would-invoke"] * 3
    assert not (root / "sites").exists() and not (root / "out").exists()
    assert ti_states(run)[("render_batch.deploy_site", -1)] == "skipped"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_strict_mode_fails_before_deploying_and_still_writes_the_manifest(tmp_path: Path) -> None:
    batch = _write_batch(
        tmp_path / "batch.jsonl",
        [
            {"outputKey": "out/a.mp4"},
            "{not json",
            {"outputKey": "out/a.mp4"},
            {"outputKey": "/abs.mp4", "variables": []},
        ],
    )
    root = tmp_path / "root"
    run = run_dag(_dag("hf_local_strict", batch, root))

    assert str(run.state) == "failed"
    assert ti_states(run)[("render_batch.prepare_batch", -1)] == "failed"
    assert not (root / "sites").exists()
    manifest = _manifest(root, "hf_local_strict")
    statuses = [(r["inputLine"], r["status"]) for r in manifest["rows"]]
    assert statuses == [(1, "skipped"), (2, "invalid"), (3, "invalid"), (4, "invalid")]
    problems = {p["line"] for p in manifest["problems"]}
    assert {2, 3, 4} <= problems


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lanes_render_their_rows_back_to_back_in_one_task(tmp_path: Path) -> None:
    """`rows_per_task=2`: 3 rows in 2 render tasks; each task renders its rows one after the
    other in one CLI process; the manifest still has one row per line."""
    from hyperframes_airflow.backends.local_cli import probe_video

    batch = _write_batch(
        tmp_path / "batch.jsonl",
        [{"outputKey": f"lane/{i}.mp4", "variables": {"title": f"Lane {i}"}} for i in range(3)],
    )
    root = tmp_path / "root"
    run = run_dag(_dag("hf_local_lanes", batch, root, rows_per_task=2))
    assert str(run.state) == "success"
    manifest = _manifest(root, "hf_local_lanes")
    assert [(r["inputLine"], r["status"]) for r in manifest["rows"]] == [
        (1, "succeeded"),
        (2, "succeeded"),
        (3, "succeeded"),
    ]
    renders = {k: v for k, v in ti_states(run).items() if k[0] == "render_batch.render"}
    assert renders == {("render_batch.render", 0): "success", ("render_batch.render", 1): "success"}
    for row in manifest["rows"]:
        assert probe_video(root / row["outputKey"])["codec_name"] == "h264"


def _form_dag(dag_id: str, root: Path, allowed: list[str]) -> Any:
    from airflow.sdk import DAG, Param

    from hyperframes_airflow.batch import render_batch
    from hyperframes_airflow.contract.config import RenderConfig

    with DAG(
        dag_id=dag_id,
        schedule=None,
        catchup=False,
        params={
            "batch": Param("", type="string"),
            "project_dir": Param(str(TEMPLATE), type="string"),
            "manifest_path": Param("", type="string"),
            "rerun_of": Param("", type="string"),
        },
    ) as dag:
        render_batch(
            project_dir="{{ params.project_dir }}",
            batch="{{ params.batch }}",
            config=RenderConfig(width=640, height=360, fps=30),
            backend="local",
            local_root=str(root),
            manifest_path="{{ params.manifest_path }}",
            rerun_of="{{ params.rerun_of }}",
            allowed_roots=allowed,
            dry_run=True,
        )
    return dag


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_form_values_outside_the_allowed_roots_are_refused(tmp_path: Path) -> None:
    """A trigger form is user input: a project, batch or manifest path typed into it must be
    under an allowed root (the DAG author's own paths are trusted)."""
    (tmp_path / "in").mkdir()
    batch = _write_batch(tmp_path / "in" / "batch.jsonl", [{"outputKey": "a.mp4"}])
    root = tmp_path / "root"
    dag = _form_dag("hf_local_roots", root, [str(tmp_path / "in"), str(TEMPLATE)])

    ok = run_dag(dag, run_conf={"batch": str(batch)})
    assert str(ok.state) == "success"  # a dry run of an allowed batch

    outside = run_dag(dag, run_conf={"batch": str(batch), "project_dir": "/etc"})
    assert str(outside.state) == "failed"
    assert ti_states(outside)[("render_batch.prepare_batch", -1)] == "failed"
    problems = _manifests(root, "hf_local_roots", outside.run_id)["problems"]
    assert any("project_dir '/etc'" in p["message"] for p in problems), problems

    escape = tmp_path / "elsewhere" / "m.json"
    written = run_dag(dag, run_conf={"batch": str(batch), "manifest_path": str(escape)})
    assert str(written.state) == "failed"  # the manifest went to the default place instead
    assert not escape.exists()
    manifest = _manifests(root, "hf_local_roots", written.run_id)
    assert any("manifest_path" in p["message"] for p in manifest["problems"])

    # A rerun reads the batch its manifest names: a manifest (allowed itself) that names a
    # batch outside the roots is refused like a typed batch path.
    forged = _manifests(root, "hf_local_roots", ok.run_id)
    forged["batchSource"] = "/etc/hostname"
    forged_file = tmp_path / "in" / "forged.json"
    forged_file.write_text(json.dumps(forged))
    conf = {"batch": str(batch), "project_dir": str(TEMPLATE), "manifest_path": ""}
    rerun = run_dag(dag, run_conf={**conf, "rerun_of": str(forged_file)})
    assert str(rerun.state) == "failed"
    problems = _manifests(root, "hf_local_roots", rerun.run_id)["problems"]
    assert any("rerun_of '/etc/hostname'" in p["message"] for p in problems), problems


def _manifests(root: Path, dag_id: str, run_id: str) -> dict[str, Any]:
    from hyperframes_airflow.backends.base import manifest_name

    path = root / "manifests" / manifest_name(dag_id, run_id, "render_batch")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
