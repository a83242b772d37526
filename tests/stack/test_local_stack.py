"""The local backend on a real Airflow stack: what `dag.test()` cannot show.

`dag.test()` ignores pools and never kills a task, so here the api-server, scheduler
(LocalExecutor), dag-processor and triggerer run for real (SQLite) and the renders are real
`hyperframes` CLI processes. One stack serves the whole module (start-up is ~25-45 s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.airflow_stack import (
    LOCAL_DAG_ID,
    RENDER_POOL,
    RENDER_TASK_ID,
    STACK_DAGS,
    AirflowStack,
    TaskInstanceInfo,
    find_render_process,
    manifest_path,
    sample_rows,
    template_variant,
    write_batch,
)

pytestmark = pytest.mark.slow

POOL_SLOTS = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("airflow-home")
    # The DAG's own per-run cap is set above the pool's slots, so only the pool can hold
    # renders back: a cap of 2 observed below is the pool's doing.
    env = {"HF_STACK_MAX_CONCURRENT": "4"}
    with AirflowStack(home, STACK_DAGS, env=env) as running:
        print(f"stack start-up: {running.startup_seconds}")
        running.create_pool(RENDER_POOL, POOL_SLOTS, include_deferred=True)
        running.wait_for_dag(LOCAL_DAG_ID)
        running.unpause(LOCAL_DAG_ID)
        yield running
    assert running.leftovers == [], f"processes left after stop(): {running.leftovers}"


def _read_manifest(root: Path, run_id: str) -> dict[str, Any]:
    path = manifest_path(root, LOCAL_DAG_ID, run_id)
    assert path.is_file(), f"no manifest at {path}"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _max_overlap(tis: list[TaskInstanceInfo]) -> int:
    """Most task instances whose [start, end] intervals overlap at one instant."""
    events: list[tuple[datetime, int]] = []
    for ti in tis:
        if ti.start_date and ti.end_date:
            events += [(ti.start_date, 1), (ti.end_date, -1)]
    peak = current = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # ends sort before starts
        current += delta
        peak = max(peak, current)
    return peak


@pytest.mark.timeout(240)
def test_pool_caps_running_renders_at_its_slots(stack: AirflowStack, tmp_path: Path) -> None:
    project = template_variant(tmp_path / "template", duration_s=1)
    batch = write_batch(tmp_path / "rows.jsonl", sample_rows(4, prefix="pool"))
    root = tmp_path / "root"
    run_id = stack.trigger(
        LOCAL_DAG_ID,
        {"batch": str(batch), "project_dir": str(project), "local_root": str(root)},
    )

    running_counts: list[int] = []
    pool_occupied: list[int] = []
    deadline = time.monotonic() + 200
    state = "queued"
    while time.monotonic() < deadline:
        renders = stack.task_instances(LOCAL_DAG_ID, run_id, RENDER_TASK_ID)
        running_counts.append(sum(ti.state == "running" for ti in renders))
        pool_occupied.append(int(stack.pool_stats(RENDER_POOL)["occupied_slots"]))
        state = str(stack.dag_run(LOCAL_DAG_ID, run_id)["state"])
        if state in ("success", "failed"):
            break
        time.sleep(0.5)

    renders = stack.task_instances(LOCAL_DAG_ID, run_id, RENDER_TASK_ID)
    print(
        f"samples={len(running_counts)} max_running={max(running_counts)} "
        f"max_occupied={max(pool_occupied)} interval_overlap={_max_overlap(renders)}"
    )
    assert state == "success", stack.log_tail("scheduler")
    assert len(renders) == 4 and {ti.state for ti in renders} == {"success"}
    # The cap holds at every sample, in the pool's own accounting, and by the recorded times.
    assert max(running_counts) <= POOL_SLOTS, running_counts
    assert max(pool_occupied) <= POOL_SLOTS, pool_occupied
    assert _max_overlap(renders) <= POOL_SLOTS
    # ...and the pool really let two run side by side (not one at a time).
    assert max(running_counts) == POOL_SLOTS or _max_overlap(renders) == POOL_SLOTS, running_counts

    manifest = _read_manifest(root, run_id)
    assert [r["status"] for r in manifest["rows"]] == ["succeeded"] * 4
    for row in manifest["rows"]:
        assert (root / row["outputKey"]).stat().st_size > 0


@pytest.mark.timeout(240)
def test_mark_failed_kills_the_render_process_tree(stack: AirflowStack, tmp_path: Path) -> None:
    from hyperframes_airflow.backends.local_cli import group_members, marked_processes

    # 60 s of video: the render is still running when we cancel it, whatever the machine.
    project = template_variant(tmp_path / "template", duration_s=60)
    rows = sample_rows(1, prefix="cancel")
    batch = write_batch(tmp_path / "rows.jsonl", rows)
    root = tmp_path / "root"
    output = root / rows[0]["outputKey"]
    run_id = stack.trigger(
        LOCAL_DAG_ID,
        {"batch": str(batch), "project_dir": str(project), "local_root": str(root)},
    )

    found = None
    deadline = time.monotonic() + 120
    while found is None and time.monotonic() < deadline:
        renders = stack.task_instances(LOCAL_DAG_ID, run_id, RENDER_TASK_ID)
        if renders and renders[0].state == "running":
            found = find_render_process(output, stack.processes())
        if found is None:
            time.sleep(0.5)
    assert found is not None, "the render never started"
    pid, marker = found
    assert marked_processes(marker), "the render's processes carry its marker"
    time.sleep(2)  # let Chrome come up, so the kill has the whole tree to find

    stack.patch_task_instance_state(LOCAL_DAG_ID, run_id, RENDER_TASK_ID, "failed", map_index=0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15 and (marked_processes(marker) or group_members(pid)):
        time.sleep(0.25)
    gone_after = time.monotonic() - t0
    print(f"render tree gone {gone_after:.1f} s after mark-failed")
    assert not marked_processes(marker), f"render processes survive: {marked_processes(marker)}"
    assert not group_members(pid)
    assert not output.exists()

    assert stack.wait_for_run(LOCAL_DAG_ID, run_id, timeout=90) == "failed"
    manifest = _read_manifest(root, run_id)
    assert len(manifest["rows"]) == 1
    assert manifest["rows"][0]["status"] == "aborted", manifest["rows"][0]

    # Which hook stopped it: the operator's on_kill logs this line before killing the group.
    logs = "\n".join(
        p.read_text(errors="replace")
        for p in (stack.home / "logs").rglob("*.log")
        if f"run_id={run_id}" in str(p) and RENDER_TASK_ID in str(p)
    )
    assert "Task killed: stopping render process group" in logs, logs[-3000:]


@pytest.mark.timeout(240)
def test_stop_mid_render_leaves_no_process_behind(tmp_path: Path) -> None:
    """`stop()` must not leak the task process, the render CLI or its detached Chrome, even
    when it interrupts a render (its own stack: the module's one must stay up)."""
    from hyperframes_airflow.backends.local_cli import marked_processes

    project = template_variant(tmp_path / "template", duration_s=60)
    rows = sample_rows(1, prefix="stop")
    batch = write_batch(tmp_path / "rows.jsonl", rows)
    root = tmp_path / "root"
    with AirflowStack(tmp_path / "home", STACK_DAGS) as own:
        own.create_pool(RENDER_POOL, 1)
        own.wait_for_dag(LOCAL_DAG_ID)
        own.unpause(LOCAL_DAG_ID)
        own.trigger(
            LOCAL_DAG_ID,
            {"batch": str(batch), "project_dir": str(project), "local_root": str(root)},
        )
        found = None
        deadline = time.monotonic() + 120
        while found is None and time.monotonic() < deadline:
            found = find_render_process(root / rows[0]["outputKey"], own.processes())
            time.sleep(0.5)
        assert found is not None, "the render never started"
        time.sleep(3)  # Chrome up: the tree is at its widest
        before = len(own.processes())
    print(f"stop() took {own.stop_seconds} s for {before} processes")
    assert own.leftovers == []
    assert own.processes() == []
    assert marked_processes(found[1]) == []
