"""A real Airflow 3.3 stack (api-server, scheduler, dag-processor, triggerer; SQLite,
LocalExecutor) for the tests and benchmarks that `dag.test()` cannot answer: pool caps,
`on_kill` on mark-failed, retries, throughput. With `executor="CeleryExecutor"` it also runs
`airflow celery worker` processes (`CeleryWorker`: each with its own environment, e.g. its own
temp and cache dirs, as on separate machines) against a broker the caller started
(`devstack.redis_server.RedisServer`).

`dag.test()` runs tasks one by one in-process, ignores pools and never kills a task, so those
behaviours need the real components talking over the Execution API. Usage:

    with AirflowStack(tmp_path / "home", DAGS) as stack:
        stack.create_pool("hyperframes_renders", 2)
        stack.wait_for_dag("hf_stack_local"); stack.unpause("hf_stack_local")
        run_id = stack.trigger("hf_stack_local", {"batch": "/x/rows.jsonl"})
        assert stack.wait_for_run("hf_stack_local", run_id, timeout=300) == "success"

Everything the stack writes goes under `home` (config, SQLite DB, Airflow task logs, one log
file per component in `home/stack-logs/`); renders still use the system temp dir for their
private 0700 scratch directories (a deep TMPDIR would overflow Chrome's socket path limit).
Every process the stack starts carries an environment cookie (`HYPERFRAMES_AIRFLOW_STACK_ID`),
so `stop()` finds and kills everything it spawned, including task processes (their own process
groups) and renders' Chrome (its own session), not just the four process groups it launched.
Each Celery worker's processes also carry `HYPERFRAMES_AIRFLOW_STACK_WORKER=<name>`, so
`crash_worker(name)` can SIGKILL one worker's whole tree at once, as when its machine dies, and
report their task instances' `hostname` as that name (`worker_hostname`), so a test can say
which worker ran what.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from devstack.render_resources import with_descendants
from devstack.service import Service
from hyperframes_airflow.backends.local_cli import all_pids, proc_stat

STACK_COOKIE = "HYPERFRAMES_AIRFLOW_STACK_ID"
"""Environment variable inherited by every process the stack spawns (found again in /proc)."""

WORKER_COOKIE = "HYPERFRAMES_AIRFLOW_STACK_WORKER"
"""Environment variable naming the Celery worker a process belongs to (its whole tree has it)."""

COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
_HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class StackError(RuntimeError):
    """The stack did not start, a component died, or the API answered with an error."""


@dataclass(frozen=True)
class CeleryWorker:
    """One `airflow celery worker` process of a CeleryExecutor stack.

    :param name: The worker's name: its Celery node name, and the `hostname` its task
        instances report (`worker_hostname`).
    :param concurrency: Tasks it runs at once (`--concurrency`).
    :param env: Extra environment for it alone (e.g. `TMPDIR`, `HYPERFRAMES_CACHE_DIR`).
    """

    name: str
    concurrency: int = 1
    env: Mapping[str, str] = field(default_factory=dict)


def worker_hostname() -> str:
    """`[core] hostname_callable` of the stack's Celery workers: the worker's name (every
    worker of a test runs on this one machine, so the real hostname would not tell them apart)."""
    return os.environ.get(WORKER_COOKIE) or socket.getfqdn()


@dataclass(frozen=True)
class TaskInstanceInfo:
    """The fields of a task instance the tests look at (the full API document is in `raw`)."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    rendered_map_index: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def hostname(self) -> str | None:
        """Where it ran (a Celery stack's worker name, see `worker_hostname`)."""
        value = self.raw.get("hostname")
        return str(value) if value else None

    @classmethod
    def from_api(cls, doc: Mapping[str, Any]) -> TaskInstanceInfo:
        return cls(
            task_id=str(doc["task_id"]),
            map_index=int(doc.get("map_index", -1)),
            state=doc.get("state"),
            try_number=int(doc.get("try_number") or 0),
            start_date=parse_time(doc.get("start_date")),
            end_date=parse_time(doc.get("end_date")),
            rendered_map_index=doc.get("rendered_map_index"),
            raw=dict(doc),
        )


def parse_time(value: Any) -> datetime | None:
    """The API's ISO timestamps (`...Z` or `+00:00`) as aware datetimes."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def free_port() -> int:
    """A TCP port nothing listens on right now (other stacks may run in parallel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def airflow_binary() -> Path:
    """The venv's `airflow`: the editable install makes `hyperframes_airflow` importable in
    every component and task without PYTHONPATH."""
    return Path(sys.executable).parent / "airflow"


class AirflowStack(Service):
    """Start, drive (over REST) and stop a real Airflow stack rooted at `home`.

    Ports are picked free, so several stacks can run at once. `env` is applied last and may
    override any setting (e.g. `AIRFLOW__CORE__PARALLELISM`). `startup_seconds` records how long
    `db migrate` and the wait for health took. `database` is a SQLAlchemy URL for the metadata
    DB (e.g. `devstack.postgres.PostgresServer.sqlalchemy_url()`); default: SQLite in `home`.

    :param executor: `LocalExecutor` (the default: the scheduler runs the tasks) or
        `CeleryExecutor` (the `celery_workers` run them).
    :param celery_workers: The workers to start with a CeleryExecutor stack.
    :param celery_broker_url: The broker (e.g. `RedisServer.url(0)`); required for Celery.
    :param celery_result_backend: Where Celery keeps task states (default: the broker's server,
        database 1; the compose file uses its PostgreSQL).
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        env: Mapping[str, str] | None = None,
        parallelism: int = 8,
        *,
        startup_timeout_s: float = 240.0,
        stop_timeout_s: float = 20.0,
        database: str | None = None,
        executor: str = "LocalExecutor",
        celery_workers: Sequence[CeleryWorker] = (),
        celery_broker_url: str | None = None,
        celery_result_backend: str | None = None,
    ) -> None:
        if executor == "CeleryExecutor" and not celery_broker_url:
            raise ValueError("a CeleryExecutor stack needs celery_broker_url")
        if celery_workers and executor != "CeleryExecutor":
            raise ValueError(f"celery_workers need executor='CeleryExecutor', not {executor!r}")
        names = [w.name for w in celery_workers]
        if len(set(names)) != len(names):
            raise ValueError(f"worker names must be unique: {names}")
        self.executor = executor
        self.celery_workers = {w.name: w for w in celery_workers}
        self.celery_broker_url = celery_broker_url
        self.celery_result_backend = celery_result_backend
        self.home = Path(home).resolve()
        self.database = database
        self.dags_folder = Path(dags_folder).resolve()
        self.parallelism = parallelism
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.stack_id = secrets.token_hex(8)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.logs_dir = self.home / "stack-logs"
        self.env = self._build_env(env or {})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.worker_procs: dict[str, subprocess.Popen[bytes]] = {}
        """The Celery workers' processes by name (a killed one stays, with its exit code)."""
        self.startup_seconds: dict[str, float] = {}
        self.leftovers: list[int] = []
        self.stop_seconds: float | None = None
        """Processes still alive after `stop()` gave up (should always be empty)."""
        self._client: httpx.Client | None = None
        self._token: str | None = None
        self._worker_log_offset: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def _build_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        # The parent (e.g. pytest's conftest) may carry its own Airflow settings: drop them all.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                STACK_COOKIE: self.stack_id,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database
                or f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                # Workers and the UI must reach *this* api-server, not the default :8080.
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                # Log servers listen too: free ports so parallel stacks do not collide.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # New DAG files are seen within seconds.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                # DAG files live in the repo: no __pycache__ written next to them.
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.celery_broker_url:
            backend = self.celery_result_backend or _redis_db(self.celery_broker_url, 1)
            env["AIRFLOW__CELERY__BROKER_URL"] = self.celery_broker_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = backend
        # Support modules beside the stack's DAG files (e.g. test triggers) import everywhere:
        # the triggerer imports a trigger by its module path, not from a parsed DAG file.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.dags_folder), os.environ.get("PYTHONPATH", "")) if p
        )
        env.update(extra)
        return env

    def start(self) -> None:
        """Migrate the DB, start the four components, wait until the API reports all healthy."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self._check_imports()
        migrate_log = self.logs_dir / "db-migrate.log"
        with migrate_log.open("wb") as out:
            done = subprocess.run(
                [str(airflow_binary()), "db", "migrate"],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                timeout=self.startup_timeout_s,
                check=False,
            )
        if done.returncode != 0:
            raise StackError(f"airflow db migrate failed:\n{_tail(migrate_log)}")
        t_migrated = time.monotonic()
        self.startup_seconds["db_migrate"] = round(t_migrated - t0, 1)
        for name in COMPONENTS:
            self._spawn(name)
        for worker in self.celery_workers.values():
            self.start_worker(worker.name, wait=False)
        self._wait_healthy(deadline=t0 + self.startup_timeout_s)
        t_healthy = time.monotonic()
        self.startup_seconds["components_healthy"] = round(t_healthy - t_migrated, 1)
        for name in self.celery_workers:
            self._wait_worker_ready(name, deadline=t0 + self.startup_timeout_s)
        self.startup_seconds["total"] = round(time.monotonic() - t0, 1)

    # -- Celery workers --------------------------------------------------------------------------

    def worker_log(self, name: str) -> Path:
        return self.logs_dir / f"worker-{name}.log"

    def start_worker(self, name: str, *, wait: bool = True) -> None:
        """Start (or start again, after `crash_worker`) the Celery worker `name`."""
        worker = self.celery_workers[name]
        running = self.worker_procs.get(name)
        if running is not None and running.poll() is None:
            raise StackError(f"worker {name!r} is already running (pid {running.pid})")
        env = {
            **self.env,
            WORKER_COOKIE: name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            # Each worker serves its own task logs: two on one machine need two ports.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            **worker.env,
        }
        argv = [
            str(airflow_binary()),
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--concurrency",
            str(worker.concurrency),
            "--without-mingle",
            "--without-gossip",
        ]
        log_path = self.worker_log(name)
        self._worker_log_offset[name] = log_path.stat().st_size if log_path.exists() else 0
        log = log_path.open("ab")
        try:
            self.worker_procs[name] = subprocess.Popen(
                argv,
                env=env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        if wait:
            self._wait_worker_ready(name, deadline=time.monotonic() + self.startup_timeout_s)

    def _wait_worker_ready(self, name: str, deadline: float) -> None:
        """Until the worker logs `<name>@<host> ready.` (it consumes from the broker)."""
        proc = self.worker_procs[name]
        log_path = self.worker_log(name)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"worker {name} exited with code {proc.returncode}:\n{_tail(log_path)}"
                )
            try:
                with log_path.open("rb") as handle:
                    handle.seek(self._worker_log_offset.get(name, 0))
                    text = handle.read().decode(errors="replace")
            except OSError:
                text = ""
            if re.search(rf"\b{re.escape(name)}@\S+ ready\.", text):
                return
            time.sleep(0.5)
        raise StackError(f"worker {name} not ready after {self.startup_timeout_s:g} s")

    def worker_processes(self, name: str) -> list[int]:
        """Live processes of worker `name`: the worker, its pool, task processes, renders.

        Found by the worker's session (Celery and Airflow set process titles, which overwrites
        what /proc shows of their environment), by its cookie (renders and Chrome start
        sessions of their own, but keep the environment they were exec'd with), and as their
        descendants (Chrome retitles the renderers it forks)."""
        proc = self.worker_procs.get(name)
        session = proc.pid if proc is not None else None
        needle = f"{WORKER_COOKIE}={name}".encode()
        found: list[int] = []
        for pid in all_pids():
            stat = proc_stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            if session is not None and stat[2] == session:
                found.append(pid)
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(pid)
        return with_descendants(found)

    def crash_worker(self, name: str, timeout_s: float = 10.0) -> list[int]:
        """SIGKILL every process of worker `name` at once (its machine dying: no warm
        shutdown, no `on_kill`); returns the pids killed. `start_worker` brings it back."""
        killed: list[int] = []
        deadline = time.monotonic() + timeout_s
        while True:
            alive = self.worker_processes(name)
            if not alive:
                break
            if time.monotonic() >= deadline:
                raise StackError(f"worker {name} processes survive SIGKILL: {alive}")
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed.extend(p for p in alive if p not in killed)
            time.sleep(0.1)
        proc = self.worker_procs.get(name)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return killed

    def _spawn(self, name: str) -> None:
        argv = [str(airflow_binary()), name]
        if name == "api-server":
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        log = (self.logs_dir / f"{name}.log").open("ab")
        try:
            self.procs[name] = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: one killpg reaches its children
            )
        finally:
            log.close()

    def crash(self, name: str) -> None:
        """SIGKILL one component and everything in its session (what a lost node looks like:
        no shutdown, no clean-up), and wait until it is gone."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def restart(self, name: str) -> None:
        """Start a component again (after `crash`), with the same settings and log file."""
        self._spawn(name)

    def _check_imports(self) -> None:
        """Fail fast if the components could not import our package (the triggerer must)."""
        probe = subprocess.run(
            [sys.executable, "-c", "import hyperframes_airflow"],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if probe.returncode != 0:
            raise StackError(f"hyperframes_airflow is not importable: {probe.stderr[-2000:]}")

    def _wait_healthy(self, deadline: float) -> None:
        last: Any = None
        while time.monotonic() < deadline:
            self._raise_if_died()
            try:
                resp = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
                if resp.status_code == 200:
                    last = resp.json()
                    if all((last.get(k) or {}).get("status") == "healthy" for k in _HEALTH_KEYS):
                        return
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise StackError(f"stack not healthy after {self.startup_timeout_s:g} s: {last}")

    def _raise_if_died(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode}:\n"
                    f"{_tail(self.logs_dir / f'{name}.log')}"
                )

    def stop(self) -> None:
        """Terminate every process the stack started, however deep, and reap the components.

        1. SIGTERM to everything except the api-server: the scheduler, dag-processor and
           triggerer groups, and every process carrying the stack's cookie or session (task
           processes sit in their own process groups, and SIGTERM runs the operator's
           `on_kill`; render CLIs and Chrome sit in their own sessions). The api-server stays up
           meanwhile, because a killed task still reports its end through the Execution API and
           would hang without it (and the LocalExecutor waits for that task before exiting).
        2. SIGTERM to the api-server.
        3. SIGKILL to whatever is left after `stop_timeout_s`.
        """
        if self._client is not None:
            self._client.close()
            self._client = None
        t0 = time.monotonic()
        api = self.procs.get("api-server")
        spare = {api.pid} if api is not None else set()
        self._signal_all(signal.SIGTERM, spare_sessions=spare)
        deadline = t0 + self.stop_timeout_s
        while time.monotonic() < deadline and self.processes(spare_sessions=spare):
            time.sleep(0.2)
        self._signal_all(signal.SIGTERM)
        while time.monotonic() < deadline + 10 and (self.processes() or self._components_alive()):
            time.sleep(0.2)
        for _ in range(3):
            if not (self.processes() or self._components_alive()):
                break
            self._signal_all(signal.SIGKILL)
            until = time.monotonic() + 3.0
            while time.monotonic() < until and self.processes():
                time.sleep(0.1)
        for proc in self._all_procs():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.leftovers = self.processes()
        self.stop_seconds = round(time.monotonic() - t0, 1)

    def _all_procs(self) -> list[subprocess.Popen[bytes]]:
        return [*self.procs.values(), *self.worker_procs.values()]

    def _components_alive(self) -> bool:
        return any(p.poll() is None for p in self._all_procs())

    def _signal_all(self, sig: signal.Signals, spare_sessions: set[int] | None = None) -> None:
        spare = spare_sessions or set()
        for proc in self._all_procs():
            if proc.poll() is None and proc.pid not in spare:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
        for pid in self.processes(spare_sessions=spare):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def processes(self, spare_sessions: set[int] | None = None) -> list[int]:
        """Live processes belonging to this stack: in a component's session or carrying the
        cookie (Chrome and the render CLI start their own sessions but inherit the env).
        Processes in `spare_sessions` are left out."""
        spare = spare_sessions or set()
        sessions = {p.pid for p in self._all_procs()} - spare
        needle = f"{STACK_COOKIE}={self.stack_id}".encode()
        me = os.getpid()
        found: list[int] = []
        for pid in all_pids():
            if pid == me:
                continue
            stat = proc_stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            if stat[2] in spare:
                continue
            if stat[2] in sessions:
                found.append(pid)
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(pid)
        return found

    def log_tail(self, component: str, lines: int = 60) -> str:
        """The end of a component's log, for assertion messages."""
        return _tail(self.logs_dir / f"{component}.log", lines)

    def task_log(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int | None = None,
        try_number: int | None = None,
    ) -> str:
        """The text of a task instance's log files (every try unless `try_number`), including
        what its trigger logged while it was deferred (`attempt=N.log.trigger.*`)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index is not None and map_index >= 0:
            folder = folder / f"map_index={map_index}"
        pattern = f"attempt={try_number}.log*" if try_number is not None else "attempt=*.log*"
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(folder.glob(pattern)) if p.is_file()
        )

    # -- REST ------------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=30)
        return self._client

    def _auth(self, refresh: bool = False) -> dict[str, str]:
        if self._token is None or refresh:
            resp = self.client.get("/auth/token")  # all-admins mode: no credentials needed
            if resp.status_code not in (200, 201):
                raise StackError(f"GET /auth/token -> {resp.status_code}: {resp.text[:300]}")
            self._token = str(resp.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def api(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: Sequence[int] = (200, 201, 204),
    ) -> Any:
        """One authenticated call; returns the decoded JSON (None when empty)."""
        resp = self.client.request(
            method, path, json=json_body, params=params, headers=self._auth()
        )
        if resp.status_code == 401:
            resp = self.client.request(
                method, path, json=json_body, params=params, headers=self._auth(refresh=True)
            )
        if resp.status_code not in ok:
            raise StackError(f"{method} {path} -> {resp.status_code}: {resp.text[:1000]}")
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed and serialized `dag_id`; surface import
        errors instead of timing out silently."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.client.get(f"/api/v2/dags/{_q(dag_id)}", headers=self._auth())
            if resp.status_code == 200:
                dag: dict[str, Any] = resp.json()
                return dag
            if time.monotonic() >= deadline:
                errors = self.api("GET", "/api/v2/importErrors").get("import_errors", [])
                raise StackError(f"DAG {dag_id!r} not parsed within {timeout:g} s: {errors}")
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{_q(dag_id)}", json_body={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a manual run with `conf` (overrides the DAG's params); returns its run id."""
        run = self.api(
            "POST",
            f"/api/v2/dags/{_q(dag_id)}/dagRuns",
            json_body={"logical_date": None, "conf": dict(conf or {})},
        )
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")
        return run

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 300.0, poll_s: float = 1.0
    ) -> str:
        """Block until the run is success or failed; returns that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.dag_run(dag_id, run_id)["state"])
            if state in TERMINAL_RUN_STATES:
                return state
            if time.monotonic() >= deadline:
                raise StackError(f"run {run_id} still {state} after {timeout:g} s")
            self._raise_if_died()
            time.sleep(poll_s)

    def task_instances(
        self, dag_id: str, run_id: str, task_id: str | None = None
    ) -> list[TaskInstanceInfo]:
        """Every task instance of the run, mapped ones included (one per map index)."""
        out: list[TaskInstanceInfo] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"limit": 100, "offset": offset}
            if task_id is not None:
                params["task_id"] = task_id
            page = self.api(
                "GET",
                f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances",
                params=params,
            )
            items = page.get("task_instances", [])
            out.extend(TaskInstanceInfo.from_api(doc) for doc in items)
            offset += len(items)
            if not items or offset >= int(page.get("total_entries", 0)):
                break
        if task_id is not None:  # the filter is a pattern on some versions: make it exact
            out = [ti for ti in out if ti.task_id == task_id]
        return sorted(out, key=lambda ti: (ti.task_id, ti.map_index))

    def patch_task_instance_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        state: str,
        map_index: int | None = None,
    ) -> Any:
        """What "Mark failed/success" in the UI does."""
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
        if map_index is not None and map_index >= 0:
            path += f"/{map_index}"
        return self.api("PATCH", path, json_body={"new_state": state})

    def patch_dag_run_state(self, dag_id: str, run_id: str, state: str) -> Any:
        return self.api(
            "PATCH",
            f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}",
            json_body={"state": state},
        )

    def clear_task_instances(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str | tuple[str, int]],
        *,
        only_failed: bool = False,
        include_downstream: bool = False,
    ) -> Any:
        """Clear tasks (a `(task_id, map_index)` pair picks one mapped instance) so they run
        again; a running one is killed first, which is what fires `on_kill`."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [t if isinstance(t, str) else [t[0], t[1]] for t in task_ids],
            "only_failed": only_failed,
            "include_downstream": include_downstream,
            "reset_dag_runs": True,
        }
        return self.api("POST", f"/api/v2/dags/{_q(dag_id)}/clearTaskInstances", json_body=body)

    def create_pool(
        self, name: str, slots: int, include_deferred: bool = True, description: str = ""
    ) -> dict[str, Any]:
        """Create (or resize) a pool; `include_deferred` makes deferred tasks hold their slot."""
        body = {
            "name": name,
            "slots": slots,
            "description": description or f"{name} (test stack)",
            "include_deferred": include_deferred,
        }
        resp = self.client.post("/api/v2/pools", json=body, headers=self._auth())
        if resp.status_code == 409:
            patched: dict[str, Any] = self.api("PATCH", f"/api/v2/pools/{_q(name)}", json_body=body)
            return patched
        if resp.status_code not in (200, 201):
            raise StackError(f"POST /api/v2/pools -> {resp.status_code}: {resp.text[:500]}")
        created: dict[str, Any] = resp.json()
        return created

    def pool_stats(self, name: str) -> dict[str, Any]:
        """slots, occupied/running/queued/scheduled/deferred/open slots, include_deferred."""
        stats: dict[str, Any] = self.api("GET", f"/api/v2/pools/{_q(name)}")
        return stats


def _q(part: str) -> str:
    return quote(part, safe="")


def _redis_db(url: str, db: int) -> str:
    """The same Redis server's database `db` (`redis://host:port/0` -> `.../<db>`)."""
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# -- HyperFrames helpers shared by the stack tests and the benchmarks ---------------------------

REPO = Path(__file__).resolve().parents[1]
STACK_DAGS = REPO / "tests" / "stack_test_dags"
WELCOME_TEMPLATE = REPO / "examples" / "templates" / "welcome"
LOCAL_DAG_ID = "hf_stack_local"
RENDER_TASK_ID = "render_batch.render"
RENDER_POOL = "hyperframes_renders"


def template_variant(target: Path, duration_s: int | None = None) -> Path:
    """Copy the example template to `target`, optionally with another `data-duration`
    (1 s keeps stack tests fast; a long one keeps a render alive long enough to cancel)."""
    shutil.copytree(WELCOME_TEMPLATE, target, ignore=shutil.ignore_patterns(".hyperframes"))
    if duration_s is not None:
        index = target / "index.html"
        html = index.read_text(encoding="utf-8")
        if 'data-duration="2"' not in html:
            raise StackError(f'{index} has no data-duration="2" to replace')
        index.write_text(
            html.replace('data-duration="2"', f'data-duration="{duration_s}"'), encoding="utf-8"
        )
    return target


def sample_rows(count: int, prefix: str = "videos") -> list[dict[str, Any]]:
    """`count` valid batch rows for the welcome template, one output each."""
    return [
        {"outputKey": f"{prefix}/{i:03d}.mp4", "variables": {"title": f"Hi #{i}", "name": f"R{i}"}}
        for i in range(count)
    ]


def write_batch(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write rows as JSONL (the format `prepare_batch` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def manifest_path(
    local_root: Path, dag_id: str, run_id: str, group_id: str = "render_batch"
) -> Path:
    """Where the local backend writes a run's manifest by default."""
    from hyperframes_airflow.backends.base import manifest_name

    return Path(local_root) / "manifests" / manifest_name(dag_id, run_id, group_id)


def find_render_process(output_path: Path, pids: Sequence[int]) -> tuple[int, str] | None:
    """(pid, render marker) of the `hyperframes render` CLI writing `output_path`, if running.

    The CLI writes to `.<stem>.partial-<token>` next to the output, so its argv names the row;
    the marker is what `marked_processes` looks for (Chrome carries it too).
    """
    from hyperframes_airflow.backends.local_cli import render_marker

    prefix = str(output_path.parent / f".{output_path.stem}.partial-")
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "render" in args and any(a.startswith(prefix) for a in args):
            marker = render_marker(pid)
            if marker:
                return pid, marker
    return None


def main() -> None:  # pragma: no cover - manual: `python -m devstack.airflow_stack [DAGS]`
    """Start a stack on a DAGs folder, print its URL and start-up time, stop on Ctrl-C."""
    import tempfile

    dags = Path(sys.argv[1] if len(sys.argv) > 1 else STACK_DAGS)
    home = Path(tempfile.mkdtemp(prefix="hf-stack-"))
    with AirflowStack(home, dags) as stack:
        print(json.dumps({"url": stack.base_url, "home": str(home), **stack.startup_seconds}))
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)


if __name__ == "__main__":  # pragma: no cover
    main()
