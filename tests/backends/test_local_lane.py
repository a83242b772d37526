"""Local lanes and the local backend's records, with real `hyperframes render` runs.

A lane renders several rows back to back in one `hyperframes render --batch` process (the CLI
loads and lints once). Checked as a user would: real MP4s (ffprobe, a decoded pixel per row),
one CLI start for the lane, every row's result as soon as it ends, a killed or overdue render
leaving no process behind, and outputs reused only when they are provably the row's own.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hyperframes_airflow.backends.local import LocalBackend
from hyperframes_airflow.backends.local_cli import (
    Toolchain,
    frame_rgb,
    marked_processes,
    probe_video,
)
from hyperframes_airflow.backends.local_cli.run import LaneItem, LaneOutcome, render_local_lane
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.plan import load_project, plan_batch
from hyperframes_airflow.contract.rows import BatchSpec, Lane
from tests.backends.test_local_cli import _long_template
from tests.requirements import render_toolchain

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "examples" / "templates" / "welcome"
ACCENTS = {"#ff0000": (255, 0, 0), "#00c000": (0, 192, 0), "#0000ff": (0, 0, 255)}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toolchain() -> Toolchain:
    return render_toolchain()


class _Calls:
    """What the lane reported, in order, with the time of each report."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, float]] = []
        self.outcomes: list[LaneOutcome] = []
        self.pids: list[int] = []

    def start(self, index: int) -> None:
        self.events.append(("start", index, time.monotonic()))

    def done(self, outcome: LaneOutcome) -> None:
        self.events.append(("done", outcome.index, time.monotonic()))
        self.outcomes.append(outcome)
        if outcome.result is not None:  # the file is in place the moment its row is done
            assert outcome.result.output_path.is_file()


@pytest.mark.timeout(300)
def test_a_lane_renders_its_rows_in_one_cli_process(toolchain: Toolchain, tmp_path: Path) -> None:
    items = [
        LaneItem({"title": f"Row {i}", "accent": accent}, tmp_path / "out" / f"row{i}.mp4")
        for i, accent in enumerate(ACCENTS)
    ]
    calls = _Calls()
    t0 = time.monotonic()
    outcomes = render_local_lane(
        toolchain=toolchain,
        project_dir=TEMPLATE,
        items=items,
        fps=None,
        quality=None,
        timeout_per_row_s=120,
        on_row_start=calls.start,
        on_row_done=calls.done,
        on_start=calls.pids.append,
    )
    wall = time.monotonic() - t0
    assert len(calls.pids) == 1  # one CLI start for the whole lane
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert all(o.result is not None and o.error is None for o in outcomes), outcomes
    # Each row is reported done before the next one starts: results stream out.
    assert [(kind, i) for kind, i, _ in calls.events] == [
        ("start", 0),
        ("done", 0),
        ("start", 1),
        ("done", 1),
        ("start", 2),
        ("done", 2),
    ]
    for item, expected in zip(items, ACCENTS.values(), strict=True):
        info = probe_video(item.output_path)
        assert (info["codec_name"], info["width"], info["height"]) == ("h264", 640, 360)
        assert abs(float(info["duration"]) - 2.0) < 0.1
        pixel = frame_rgb(item.output_path, 1.0, 16, 16)
        assert all(abs(a - b) <= 24 for a, b in zip(pixel, expected, strict=True)), pixel
    print(f"\n[local lane] 3 rows in {wall:.1f} s ({wall / 3:.1f} s/video)")


@pytest.mark.timeout(300)
def test_an_overdue_row_is_killed_and_the_lane_goes_on_in_a_new_process(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    project = _long_template(tmp_path)  # ~60 s of capture per row: cannot finish in time
    items = [LaneItem({"title": f"T{i}"}, tmp_path / "out" / f"late{i}.mp4") for i in range(2)]
    calls = _Calls()
    outcomes = render_local_lane(
        toolchain=toolchain,
        project_dir=project,
        items=items,
        fps=None,
        quality=None,
        timeout_per_row_s=10,
        on_row_done=calls.done,
        on_start=calls.pids.append,
        owner="lanetimeout1",
    )
    assert [(o.index, type(o.error).__name__) for o in outcomes] == [
        (0, "LocalRenderTimeout"),
        (1, "LocalRenderTimeout"),
    ]
    assert len(calls.pids) == 2  # row 2 went on in a fresh CLI process
    assert marked_processes("lanetimeout1", prefix=True) == []
    assert not list((tmp_path / "out").glob("*.mp4"))  # no half-written output


@pytest.mark.timeout(300)
def test_a_killed_lane_stops_at_once_and_renders_nothing_more(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    items = [LaneItem({"title": f"K{i}"}, tmp_path / "out" / f"k{i}.mp4") for i in range(3)]
    stop = threading.Event()
    calls = _Calls()

    def done(outcome: LaneOutcome) -> None:
        calls.done(outcome)
        stop.set()  # the task is killed while row 2 renders

    outcomes = render_local_lane(
        toolchain=toolchain,
        project_dir=TEMPLATE,
        items=items,
        fps=None,
        quality=None,
        timeout_per_row_s=120,
        on_row_done=done,
        should_stop=stop.is_set,
        owner="lanekill0001",
    )
    assert [o.index for o in outcomes] == [0]
    assert marked_processes("lanekill0001", prefix=True) == []
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["k0.mp4"]


# -- the backend: records, reuse, replacement, OS errors ---------------------------------------


def _plan(
    tmp_path: Path, rows: list[dict[str, Any]], root: Path, run_id: str
) -> tuple[BatchSpec, Lane]:
    batch = tmp_path / f"{run_id}.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    composition, site = load_project(TEMPLATE)
    backend = LocalBackend(root)
    resolved = backend.resolve(site_id=site, config=RenderConfig(width=640, height=360, fps=30))
    with batch.open("rb") as handle:
        plan = plan_batch(
            handle,
            config=resolved.config,
            composition=composition,
            site_id=site,
            dag_id="lane_dag",
            run_id=run_id,
            bucket=resolved.digest_bucket,
        )
    assert not plan.errors, plan.errors
    backend.deploy_site(TEMPLATE, site)
    spec = BatchSpec(
        backend="local",
        source=str(batch),
        site_id=site,
        project_uri=resolved.project_uri,
        digest_bucket=resolved.digest_bucket,
        config=resolved.config.to_wire(),
        local_root=str(root),
    )
    return spec, Lane(rows=[r.ref() for r in plan.rows])


@pytest.mark.timeout(400)
def test_outputs_are_reused_only_when_provably_the_rows_own(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    backend = LocalBackend(root, toolchain=toolchain)
    rows = [{"outputKey": "own/a.mp4", "variables": {"title": "A"}}]
    spec, lane = _plan(tmp_path, rows, root, "run-1")
    first = backend.render_lane(spec, lane, dag_id="lane_dag", run_id="run-1", owner="own1")
    assert (first[0].status, first[0].attempt) == ("succeeded", 1)
    assert first[0].thumbnail_uri and Path(first[0].thumbnail_uri.removeprefix("file://")).is_file()

    again = backend.render_lane(spec, lane, dag_id="lane_dag", run_id="run-1", owner="own1")
    assert again[0] == first[0]  # the same run, the same input, the same file: reused

    video = root / "own" / "a.mp4"
    video.write_bytes(video.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    rerendered = backend.render_lane(spec, lane, dag_id="lane_dag", run_id="run-1", owner="own1")
    assert (rerendered[0].status, rerendered[0].attempt) == ("succeeded", 2)

    # Another run writes the same key: it renders, and says whose output it replaced.
    spec2, lane2 = _plan(tmp_path, rows, root, "run-2")
    other = backend.render_lane(spec2, lane2, dag_id="lane_dag", run_id="run-2", owner="own2")
    assert other[0].replaced == first[0].execution_name
    # Clearing run 1's task now must not "reuse" a file that is run 2's video.
    back = backend.render_lane(spec, lane, dag_id="lane_dag", run_id="run-1", owner="own1")
    assert back[0].replaced == other[0].execution_name and back[0].attempt == 1


@pytest.mark.timeout(300)
def test_a_row_that_cannot_be_written_fails_alone(toolchain: Toolchain, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "clash" / "a.mp4").mkdir(parents=True)  # a folder where the file must go
    rows = [
        {"outputKey": "clash/a.mp4", "variables": {"title": "A"}},
        {"outputKey": "clash/b.mp4", "variables": {"title": "B"}},
    ]
    spec, lane = _plan(tmp_path, rows, root, "run-os")
    backend = LocalBackend(root, toolchain=toolchain)
    done = backend.render_lane(spec, lane, dag_id="lane_dag", run_id="run-os", owner="osfail1")
    by_key = {r.output_key: r for r in done}
    assert by_key["clash/a.mp4"].status == "failed" and by_key["clash/a.mp4"].cause
    assert "A" not in (by_key["clash/a.mp4"].cause or "").split()  # no variable value
    assert by_key["clash/b.mp4"].status == "succeeded"


def test_png_sequence_is_refused_up_front_on_the_local_backend(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not supported by the local backend"):
        LocalBackend(tmp_path).resolve(
            site_id="x", config=RenderConfig(width=640, height=360, fps=30, format="png-sequence")
        )


def test_an_output_key_cannot_leave_the_root(tmp_path: Path) -> None:
    from hyperframes_airflow.backends.local import OutsideRoot

    backend = LocalBackend(tmp_path / "root")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    for key in ("../escape.mp4", "/etc/passwd.mp4", "link/escape.mp4"):
        with pytest.raises(OutsideRoot):
            backend.confined(key)
    assert backend.confined("ok/a.mp4") == (tmp_path / "root" / "ok" / "a.mp4").resolve()


def test_a_killed_renders_leftovers_are_reclaimed(tmp_path: Path) -> None:
    """A hard-killed task leaves its render's private dir (variables, compiled HTML) and maybe
    the CLI itself (its own session) behind; the next start of that task reclaims both."""
    import os
    import subprocess

    from hyperframes_airflow.backends.local_cli.processes import MARKER_ENV
    from hyperframes_airflow.backends.local_cli.run import reclaim, scratch_dir

    owner = "reclaim00001"
    leftover = scratch_dir(owner)
    (leftover / "variables.json").write_text('{"title": "someone"}')
    orphan = subprocess.Popen(
        ["sleep", "300"],
        env={**os.environ, MARKER_ENV: f"{owner}-deadbeef"},
        start_new_session=True,
    )
    try:
        assert marked_processes(owner, prefix=True) == [orphan.pid]
        assert reclaim(owner) == 1
        assert not leftover.exists()
        assert orphan.wait(timeout=10) != 0  # killed
        assert marked_processes(owner, prefix=True) == []
    finally:
        if orphan.poll() is None:
            orphan.kill()


@pytest.mark.timeout(300)
def test_a_truncated_record_does_not_block_the_row(toolchain: Toolchain, tmp_path: Path) -> None:
    root = tmp_path / "root"
    backend = LocalBackend(root, toolchain=toolchain)
    spec, lane = _plan(
        tmp_path, [{"outputKey": "rec/a.mp4", "variables": {"title": "A"}}], root, "run-r"
    )
    backend.render_lane(spec, lane, dag_id="lane_dag", run_id="run-r", owner="rec1")
    [record] = list((root / ".hyperframes" / "outputs").glob("*.json"))
    record.write_text('{"outputKey": "rec/a.mp4", "row": {"inputL')  # a crash mid-write
    again = backend.render_lane(spec, lane, dag_id="lane_dag", run_id="run-r", owner="rec1")
    assert again[0].status == "succeeded"
    assert json.loads(record.read_text())["row"]["status"] == "succeeded"  # whole again
