"""Part 5: a 100,000-row batch in lanes against the moto server; XCom and metadata-DB growth.

One real stack on PostgreSQL (Debian's, private cluster) and one counting moto server whose
executions succeed at once (`MotoStack(instant=True)`: one Pass state, so moto's interpreter
is not what is measured). `hf_bench_ours`
(`render_batch`, backend lambda, no `rows_per_task`) gets N rows: above `[core]
max_map_length` (1,024) prepare_batch groups them into lanes automatically. The pool has more
slots than lanes, so every lane runs at once in the one triggerer.

Measured: prepare_batch and deploy_site time; time until every lane is deferred; rows finished
per second over a rendering window (StartExecution and GetExecutionHistory counted by moto) and
the triggerer's CPU seconds per row; then the run is marked failed (every lane's `on_kill` stops
its current render and records its rows) and `collect_manifest` writes the manifest of all N
lines. PostgreSQL table sizes before and after, the XCom rows and bytes by task and key, and the
trigger rows' kwargs bytes, per planned row. When the window ends before the batch does, the
time the whole batch would take is extrapolated from the measured rate (and the note says what
bounds that rate).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._support import (
    Table,
    bench_stack,
    fmt,
    jsonl,
    machine_line,
    package_snapshot,
    retrying,
    welcome_rows,
)
from devstack.airflow_stack import AirflowStack
from devstack.moto_stack import MotoStack
from devstack.postgres import PostgresServer

SECTION_ID = "scale"
DAG_ID = "hf_bench_ours"
POOL = "bench_ours"
RENDER = "render_batch.render"
#: The triggerer's `[hyperframes] sfn_history_per_second` here (the default, 5, suits AWS).
HISTORY_RATE = 200.0


@dataclass
class ScaleResult:
    rows: int
    started_at: str
    code: str
    lanes: int = 0
    prepare_s: float | None = None
    deploy_s: float | None = None
    all_deferred_s: float | None = None
    window_s: float = 0.0
    rows_done_in_window: int = 0
    rows_per_s: float | None = None
    triggerer_cpu_s_per_row: float | None = None
    sfn_per_row: dict[str, float] = field(default_factory=dict)
    kill_to_manifest_s: float | None = None
    run_state: str = ""
    manifest_statuses: dict[str, int] = field(default_factory=dict)
    manifest_bytes: int | None = None
    table_growth: dict[str, int] = field(default_factory=dict)
    xcom_after_prepare: list[tuple[str, str, int, int]] = field(default_factory=list)
    xcom_final: list[tuple[str, str, int, int]] = field(default_factory=list)
    deferred_at_cutoff: int | None = None
    trigger_rows: int = 0
    trigger_kwargs_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    history_rate: float = HISTORY_RATE
    killed: bool = False


def run(
    rows: int = 100_000,
    window: float = 600.0,
    keep: bool = False,
    max_map_length: int | None = None,
    dispatch_wait: float = 300.0,
    history_rate: float = HISTORY_RATE,
) -> ScaleResult:
    work = Path(tempfile.mkdtemp(prefix="hf-bench-scale-"))
    snapshot = package_snapshot(work)
    result = ScaleResult(rows, datetime.now(UTC).isoformat(timespec="seconds"), snapshot.label)
    result.history_rate = history_rate
    try:
        with MotoStack(count_calls=True, instant=True) as moto:
            env = {
                **moto.airflow_conn_env(),
                **snapshot.env(),
                "HF_BENCH_OURS_POOL": POOL,
                # moto has no read quota; one history read per finished row is the bound.
                "AIRFLOW__HYPERFRAMES__SFN_HISTORY_PER_SECOND": str(history_rate),
            }
            if max_map_length is not None:  # a smaller batch shaped like a big one
                env["AIRFLOW__CORE__MAX_MAP_LENGTH"] = str(max_map_length)
            with bench_stack("postgres", work / "home", snapshot.dags, env) as (st, pg):
                assert pg is not None
                _measure(st, pg, moto, result, rows, window, dispatch_wait)
        return result
    finally:
        if keep:
            print(f"[scale] kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _xcoms(pg: PostgresServer) -> list[tuple[str, str, int, int]]:
    out = pg.psql(
        pg.database,
        # Each render task's lane is its own `lane.<i>` XCom: one line for all of them.
        "SELECT task_id, CASE WHEN key LIKE 'lane.%' THEN 'lane.<i>' ELSE key END, count(*), "
        "coalesce(sum(length(value::text)), 0) FROM xcom GROUP BY 1, 2 ORDER BY 1, 2",
    )
    rows = []
    for line in out.splitlines():
        task, key, count, size = line.split("|")
        rows.append((task, key, int(count), int(size)))
    return rows


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of processes and their reaped children, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def _triggerer_pids(st: AirflowStack) -> list[int]:
    proc = st.procs.get("triggerer")
    if proc is None:
        return []
    found = []
    for pid in st.processes():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[3]) == proc.pid or pid == proc.pid or int(stat[2]) == proc.pid:
            found.append(pid)
    return found


def _measure(
    st: AirflowStack,
    pg: PostgresServer,
    moto: MotoStack,
    result: ScaleResult,
    rows: int,
    window: float,
    dispatch_wait: float,
) -> None:
    st.create_pool(POOL, 2000, include_deferred=True)
    st.wait_for_dag(DAG_ID)
    st.unpause(DAG_ID)
    key = f"bench/scale-{rows}.jsonl"
    moto.boto3_client("s3").put_object(
        Bucket=moto.bucket, Key=key, Body=jsonl(welcome_rows(rows, "bench/scale")).encode()
    )
    before = pg.table_sizes()
    moto.reset_calls()
    t0 = time.monotonic()
    run_id = st.trigger(DAG_ID, {"batch": f"s3://{moto.bucket}/{key}"})
    print(f"[scale] triggered {run_id}", flush=True)
    # Until every lane is deferred (or rendering is over).
    first_start: float | None = None
    prepared = False
    deadline = t0 + 3600
    dispatch_deadline: float | None = None
    while time.monotonic() < deadline:
        if dispatch_deadline is not None and time.monotonic() > dispatch_deadline:
            stats = retrying(lambda: st.pool_stats(POOL))
            result.deferred_at_cutoff = int(stats.get("deferred_slots", 0))
            result.notes.append(
                f"Not every lane was deferred {dispatch_wait:g} s after prepare_batch ended: "
                f"{result.deferred_at_cutoff} of {result.lanes} were; rendering was measured with "
                "those."
            )
            break
        time.sleep(2.0)
        state = retrying(lambda: st.dag_run(DAG_ID, run_id))["state"]
        calls = moto.calls()
        if first_start is None and calls["states:StartExecution"]:
            first_start = time.monotonic()
        if not prepared:
            tis = {
                ti.task_id: ti
                for ti in retrying(lambda: st.task_instances(DAG_ID, run_id))
                if ti.map_index < 0
            }
            prep = tis.get("render_batch.prepare_batch")
            if prep is not None and prep.state in ("success", "failed"):
                prepared = True
                dispatch_deadline = time.monotonic() + dispatch_wait
                result.prepare_s = _duration(prep)
                result.xcom_after_prepare = _xcoms(pg)
                print(f"[scale] XCom after prepare: {result.xcom_after_prepare}", flush=True)
                print(f"[scale] prepared in {result.prepare_s} s", flush=True)
                if prep.state == "failed":
                    result.notes.append("prepare_batch failed")
                    break
        if prepared:
            if not result.lanes:
                mapped = retrying(lambda: st.task_instances(DAG_ID, run_id, RENDER))
                result.lanes = sum(1 for ti in mapped if ti.map_index >= 0)
                if result.lanes:
                    print(f"[scale] {result.lanes} lanes", flush=True)
            stats = retrying(lambda: st.pool_stats(POOL))
            deferred = int(stats.get("deferred_slots", 0))
            if (result.lanes and deferred >= result.lanes) or state in (
                "success",
                "failed",
            ):
                result.all_deferred_s = round(time.monotonic() - t0, 1)
                break
    tis = {
        ti.task_id: ti
        for ti in retrying(lambda: st.task_instances(DAG_ID, run_id))
        if ti.map_index < 0
    }
    result.deploy_s = _duration(tis.get("render_batch.deploy_site"))
    print(f"[scale] all lanes deferred at {result.all_deferred_s} s", flush=True)
    # The rendering window: rows finished = history reads (one per row, at its end).
    trig = _triggerer_pids(st)
    cpu0, calls0, w0 = _cpu_seconds(trig), moto.calls(), time.monotonic()
    while time.monotonic() - w0 < window:
        time.sleep(10.0)
        if retrying(lambda: st.dag_run(DAG_ID, run_id))["state"] in ("success", "failed"):
            break
    calls1, w1 = moto.calls(), time.monotonic()
    cpu1 = _cpu_seconds(trig)
    done = calls1["states:GetExecutionHistory"] - calls0["states:GetExecutionHistory"]
    result.window_s = round(w1 - w0, 1)
    result.rows_done_in_window = done
    result.rows_per_s = round(done / (w1 - w0), 2)
    result.triggerer_cpu_s_per_row = round((cpu1 - cpu0) / max(done, 1), 4)
    result.sfn_per_row = {
        k.split(":")[1]: round((calls1[k] - calls0[k]) / max(done, 1), 2)
        for k in calls1
        if k.startswith("states:")
    }
    print(f"[scale] window: {done} rows in {result.window_s} s", flush=True)
    # End it: mark the run failed (every lane's on_kill records its rows), wait for the manifest.
    state = retrying(lambda: st.dag_run(DAG_ID, run_id))["state"]
    k0 = time.monotonic()
    if state not in ("success", "failed"):
        result.killed = True
        st.patch_dag_run_state(DAG_ID, run_id, "failed")
    collect_state = None
    while time.monotonic() - k0 < 1800:
        time.sleep(5.0)
        collect = [
            ti
            for ti in retrying(
                lambda: st.task_instances(DAG_ID, run_id, "render_batch.collect_manifest")
            )
        ]
        collect_state = collect[0].state if collect else None
        if collect_state in ("success", "failed", "upstream_failed", "skipped"):
            break
    result.kill_to_manifest_s = round(time.monotonic() - k0, 1)
    final = retrying(lambda: st.dag_run(DAG_ID, run_id))["state"]
    result.run_state = f"{final} (collect_manifest {collect_state})"
    time.sleep(5.0)
    after = pg.table_sizes()
    result.table_growth = {
        t: after.get(t, 0) - before.get(t, 0)
        for t in sorted(after)
        if after.get(t, 0) - before.get(t, 0) > 0
    }
    result.xcom_final = _xcoms(pg)
    trig_rows = (
        pg.psql(pg.database, "SELECT count(*), coalesce(sum(length(kwargs)), 0) FROM trigger")
        .strip()
        .split("|")
    )
    result.trigger_rows, result.trigger_kwargs_bytes = int(trig_rows[0]), int(trig_rows[1])
    _manifest(moto, result)


def _xcom_value(pg: PostgresServer, task_id: str, key: str) -> str:
    return pg.psql(
        pg.database,
        f"SELECT value::text FROM xcom WHERE task_id = '{task_id}' "
        f"AND key = '{key}' AND map_index = -1",
    ).strip()


def _duration(ti: Any) -> float | None:
    if ti is None or not ti.start_date or not ti.end_date:
        return None
    return round((ti.end_date - ti.start_date).total_seconds(), 1)


def _manifest(moto: MotoStack, result: ScaleResult) -> None:
    s3 = moto.boto3_client("s3")
    listed = s3.list_objects_v2(Bucket=moto.bucket, Prefix="manifests/")
    docs = [o for o in listed.get("Contents", []) if o["Key"].endswith(".json")]
    if not docs:
        result.notes.append("no manifest found under manifests/")
        return
    obj = max(docs, key=lambda o: o["LastModified"])
    body = s3.get_object(Bucket=moto.bucket, Key=obj["Key"])["Body"].read()
    result.manifest_bytes = len(body)
    doc = json.loads(body)
    counts: dict[str, int] = {}
    for row in doc.get("rows", []):
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    result.manifest_statuses = counts


def to_markdown(result: ScaleResult, *, command: str, load_note: str) -> str:
    n = result.rows
    growth = Table(["table", "growth (bytes)", "bytes per planned row"])
    for table, delta in sorted(result.table_growth.items(), key=lambda kv: -kv[1]):
        growth.add(f"`{table}`", f"{delta:,}", f"{delta / n:.1f}")
    total = sum(result.table_growth.values())
    growth.add("**all tables**", f"{total:,}", f"{total / n:.1f}")
    xcom = Table(["when", "task", "key", "rows", "bytes (JSON text)", "bytes per planned row"])
    for when, listing in (
        ("after prepare", result.xcom_after_prepare),
        ("at the end", result.xcom_final),
    ):
        for task, key, count, size in listing:
            xcom.add(when, f"`{task}`", f"`{key}`", f"{count:,}", f"{size:,}", f"{size / n:.1f}")
    eta = (n / result.rows_per_s / 3600) if result.rows_per_s else None
    lines = [
        f"## Part 5: a {n:,}-row batch in lanes against the moto server",
        "",
        f"Measured {result.started_at} with `{command}`.",
        "",
        f"Machine: {machine_line()}. Code: {result.code}. One real stack on PostgreSQL (private "
        "Debian cluster), LocalExecutor, one triggerer; one moto server whose executions "
        "succeed at once. Nothing is asserted.",
        "",
        f"- Lanes: {result.lanes:,} render tasks (automatic above `max_map_length`), "
        f"{n / max(result.lanes, 1):.1f} rows each. prepare_batch {fmt(result.prepare_s)} s, "
        f"deploy_site {fmt(result.deploy_s)} s; every lane deferred "
        f"{fmt(result.all_deferred_s)} s after the trigger.",
        f"- Rendering: {result.rows_done_in_window:,} rows finished in a {result.window_s:g} s "
        f"window = **{fmt(result.rows_per_s, 2)} rows/s** with every lane running; triggerer "
        f"CPU {fmt(result.triggerer_cpu_s_per_row, 3)} s per row; Step Functions calls per row: "
        + ", ".join(f"{k} {v:g}" for k, v in sorted(result.sfn_per_row.items()))
        + (f". At that rate the whole batch takes **{eta:.1f} h**." if eta else "."),
        (
            f"- Then the run was marked failed: {fmt(result.kill_to_manifest_s)} s until "
            if result.killed
            else "- The run ended by itself, within the window: "
        )
        + f"collect_manifest ended; run {result.run_state}. Manifest: "
        f"{sum(result.manifest_statuses.values()):,} rows {result.manifest_statuses}, "
        f"{(result.manifest_bytes or 0) / 1e6:.1f} MB.",
        f"- Trigger rows left: {result.trigger_rows} ({result.trigger_kwargs_bytes:,} bytes of "
        "kwargs).",
        "",
        "PostgreSQL growth over the whole run (`pg_total_relation_size`: heap, indexes, TOAST):",
        "",
        growth.render(),
        "",
        "XCom rows and bytes:",
        "",
        xcom.render(),
        "",
        *[f"- {note}" for note in result.notes],
        f"- {load_note}",
        "",
    ]
    return "\n".join(lines)
