"""Worker renders beyond one machine: a real CeleryExecutor stack, outputs in object storage.

Everything runs for real on this machine: Debian's `redis-server` (the broker, on a free port),
Airflow's api-server, scheduler, dag-processor and triggerer with the CeleryExecutor, and TWO
`airflow celery worker` processes, each with its own temp dir and site cache (as if on two
machines: they share no output directory), rendering with the `hyperframes` CLI into a moto S3
bucket (a real `moto_server` over HTTP) through the `hyperframes_default` connection. Videos
are downloaded from the bucket and probed with ffprobe. One stack serves the module.

What a user checks: a batch's rows are spread over both workers and land whole in the bucket
with the manifest beside them; a worker that dies mid-render (SIGKILL of its whole process tree,
as when its machine goes) leaves no partial object, and the row's retry on the other worker
uploads a whole one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.airflow_stack import (
    RENDER_POOL,
    RENDER_TASK_ID,
    AirflowStack,
    CeleryWorker,
    sample_rows,
    template_variant,
)
from devstack.moto_stack import MotoStack
from devstack.redis_server import INSTALL_HINT, RedisServer, find_redis_server
from devstack.render_resources import TreeSampler, has_env, with_descendants
from hyperframes_airflow.backends.local_cli import MARKER_ENV, probe_video
from hyperframes_airflow.contract.site import site_id
from tests.requirements import need, render_toolchain

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "hf_celery_local"
WORKERS = ("a", "b")
POOL_SLOTS = 2


@dataclass
class Celery:
    """The running stack, where each worker keeps its files, and the bucket."""

    stack: AirflowStack
    base: Path
    moto: MotoStack

    def root(self, prefix: str) -> str:
        return f"s3://{self.moto.bucket}/{prefix}"

    def cache(self, worker: str) -> Path:
        return self.base / worker / "cache"

    def scratch(self, worker: str) -> Path:
        return self.base / worker / "tmp" / f"hf-scratch-{os.getuid()}"

    def renders(self, worker: str) -> list[int]:
        """Live render processes of one worker: the CLI, ffmpeg, Chrome and its children."""
        processes = self.stack.worker_processes(worker)
        return with_descendants(p for p in processes if has_env(p, MARKER_ENV))

    def airflow(self, worker: str) -> list[int]:
        """The worker's own processes: Celery, its pool, task supervisors and task runners."""
        renders = set(self.renders(worker))
        return [p for p in self.stack.worker_processes(worker) if p not in renders]

    def objects(self, prefix: str) -> dict[str, dict[str, Any]]:
        listed = self.moto.boto3_client("s3").list_objects_v2(
            Bucket=self.moto.bucket, Prefix=prefix
        )
        return {o["Key"][len(prefix) :]: o for o in listed.get("Contents", [])}

    def get(self, key: str) -> bytes:
        s3 = self.moto.boto3_client("s3")
        body: bytes = s3.get_object(Bucket=self.moto.bucket, Key=key)["Body"].read()
        return body

    def put_batch(self, key: str, rows: list[dict[str, Any]]) -> str:
        body = "".join(json.dumps(r) + "\n" for r in rows).encode()
        self.moto.boto3_client("s3").put_object(Bucket=self.moto.bucket, Key=key, Body=body)
        return f"s3://{self.moto.bucket}/{key}"

    def manifest(self, prefix: str) -> dict[str, Any]:
        found = [k for k in self.objects(prefix) if k.startswith(f"manifests/{DAG_ID}/")]
        assert len(found) == 1, f"manifests under {prefix}: {found}"
        doc: dict[str, Any] = json.loads(self.get(prefix + found[0]))
        return doc

    def tries(self, run_id: str, map_index: int) -> list[dict[str, Any]]:
        """Every try of one render task instance (hostname, state, try_number)."""
        path = (
            f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{RENDER_TASK_ID}"
            f"/{map_index}/tries"
        )
        found: list[dict[str, Any]] = self.stack.api("GET", path)["task_instances"]
        return sorted(found, key=lambda t: int(t["try_number"]))


@pytest.fixture(scope="module")
def celery(moto_stack: MotoStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Celery]:
    render_toolchain()
    need(None if find_redis_server() else f"redis-server is not installed: {INSTALL_HINT}")
    # Short: Chrome's socket lives under the render's TMPDIR (108-byte limit for socket paths).
    base = Path(tempfile.mkdtemp(prefix="hfc-", dir="/tmp"))
    workers = [
        CeleryWorker(
            name,
            concurrency=1,
            env={
                "TMPDIR": str(base / name / "tmp"),
                "HYPERFRAMES_CACHE_DIR": str(base / name / "cache"),
            },
        )
        for name in WORKERS
    ]
    for name in WORKERS:
        (base / name / "tmp").mkdir(parents=True)
    env = {
        **moto_stack.airflow_conn_env(),
        # The form's paths (templated) must stay under these: the test's temp dirs, the bucket.
        "HYPERFRAMES_ALLOWED_ROOTS": f"{tempfile.gettempdir()},s3://{moto_stack.bucket}/celery/",
        # A dead worker's task is noticed by its missing heartbeats (default: 300 s).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
    }
    try:
        with (
            RedisServer(base / "redis") as redis,
            AirflowStack(
                tmp_path_factory.mktemp("airflow-home-celery"),
                DAGS,
                env=env,
                executor="CeleryExecutor",
                celery_workers=workers,
                celery_broker_url=redis.url(0),
                stop_timeout_s=10,
            ) as stack,
        ):
            print(f"celery stack start-up: {stack.startup_seconds}")
            stack.create_pool(RENDER_POOL, POOL_SLOTS, include_deferred=True)
            stack.wait_for_dag(DAG_ID)
            stack.unpause(DAG_ID)
            yield Celery(stack, base, moto_stack)
        assert stack.leftovers == [], f"processes left after stop(): {stack.leftovers}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


@pytest.mark.timeout(420)
def test_six_rows_render_on_both_workers_into_the_bucket(celery: Celery, tmp_path: Path) -> None:
    project = template_variant(tmp_path / "template", duration_s=1)
    sid = site_id(project)
    rows = sample_rows(6, prefix="six")
    prefix = "celery/six/"
    batch = celery.put_batch("celery/batches/six.jsonl", rows)
    groups: dict[str, Callable[[], list[int]]] = {}
    for name in WORKERS:
        groups[f"{name}:airflow"] = functools.partial(celery.airflow, name)
        groups[f"{name}:renders"] = functools.partial(celery.renders, name)
    with TreeSampler(dict(groups), interval_s=0.5) as idle:
        time.sleep(2)
    with TreeSampler(dict(groups), interval_s=0.5) as busy:
        run_id = celery.stack.trigger(
            DAG_ID,
            {"batch": batch, "project_dir": str(project), "local_root": celery.root(prefix)},
        )
        state = celery.stack.wait_for_run(DAG_ID, run_id, timeout=360)
    assert state == "success", celery.stack.log_tail("scheduler")

    renders = celery.stack.task_instances(DAG_ID, run_id, RENDER_TASK_ID)
    where = {ti.rendered_map_index: ti.hostname for ti in renders}
    print(
        "rendered by: " + ", ".join(f"{key} on {worker}" for key, worker in sorted(where.items()))
    )
    assert [ti.state for ti in renders] == ["success"] * 6
    assert set(where.values()) == set(WORKERS), where  # spread over both workers
    for name in WORKERS:
        print(
            f"worker {name}: own processes idle {_mib(idle.peaks[f'{name}:airflow'].pss_kib)} PSS,"
            f" while rendering {_mib(busy.peaks[f'{name}:airflow'].pss_kib)} PSS "
            f"({busy.peaks[f'{name}:airflow'].processes} processes); its renders peaked at "
            f"{_mib(busy.peaks[f'{name}:renders'].pss_kib)} PSS / "
            f"{_mib(busy.peaks[f'{name}:renders'].rss_kib)} RSS"
        )

    manifest = celery.manifest(prefix)
    stored = celery.objects(prefix)
    assert manifest["siteId"] == sid and manifest["totals"]["byStatus"] == {"succeeded": 6}
    for row, wanted in zip(manifest["rows"], rows, strict=True):
        key = wanted["outputKey"]
        assert row["outputUri"] == celery.root(prefix) + key
        assert row["bytes"] == stored[key]["Size"]
        video = tmp_path / "downloaded" / key
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(celery.get(prefix + key))
        info = probe_video(video)
        assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (640, 360)
        assert info["nb_frames"] == 30
    assert f"sites/{sid}/project.tar.gz" in stored
    for name in WORKERS:  # each machine unpacked the site once, and kept no render scratch
        assert site_id(celery.cache(name) / "sites" / sid) == sid
        assert list(celery.scratch(name).iterdir()) == []


@pytest.mark.timeout(420)
def test_a_worker_killed_mid_render_leaves_no_partial_object_and_the_retry_is_whole(
    celery: Celery, tmp_path: Path
) -> None:
    project = template_variant(tmp_path / "template", duration_s=20)  # long enough to kill
    prefix = "celery/kill/"
    key = "kill/000.mp4"
    batch = celery.put_batch("celery/batches/kill.jsonl", sample_rows(1, prefix="kill"))
    s3 = celery.moto.boto3_client("s3")
    run_id = celery.stack.trigger(
        DAG_ID,
        {"batch": batch, "project_dir": str(project), "local_root": celery.root(prefix)},
    )

    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline:
        for name in WORKERS:
            pids = celery.renders(name)
            if any("chrom" in _cmdline(p) for p in pids):  # the render is under way
                victim = name
        time.sleep(0.25)
    assert victim is not None, "the render never started"
    survivor = next(name for name in WORKERS if name != victim)
    time.sleep(2)
    killed = celery.stack.crash_worker(victim)
    print(f"killed worker {victim} mid-render: {len(killed)} processes")
    assert celery.renders(victim) == []

    # Nothing of the killed render is in the bucket: no object, no upload under way.
    assert key not in celery.objects(prefix)
    assert not s3.list_multipart_uploads(Bucket=celery.moto.bucket, Prefix=prefix).get("Uploads")
    assert celery.stack.wait_for_run(DAG_ID, run_id, timeout=360) == "success"

    tries = celery.tries(run_id, 0)
    print(
        "tries: " + ", ".join(f"#{t['try_number']} {t['state']} on {t['hostname']}" for t in tries)
    )
    assert [(t["hostname"], t["state"]) for t in tries][-1] == (survivor, "success")
    assert tries[0]["hostname"] == victim and len(tries) == 2

    head = s3.head_object(Bucket=celery.moto.bucket, Key=prefix + key)
    video = tmp_path / "retried.mp4"
    video.write_bytes(celery.get(prefix + key))
    info = probe_video(video)
    assert info["nb_frames"] == 600 and abs(float(info["duration"]) - 20.0) < 0.1
    manifest = celery.manifest(prefix)
    assert [r["status"] for r in manifest["rows"]] == ["succeeded"]
    assert manifest["rows"][0]["bytes"] == head["ContentLength"] == video.stat().st_size
    records = [k for k in celery.objects(prefix) if k.startswith(".hyperframes/outputs/")]
    record = json.loads(celery.get(prefix + records[0]))
    assert record["etag"] == head["ETag"]
    assert list(celery.scratch(survivor).iterdir()) == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
