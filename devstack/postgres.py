"""A throw-away PostgreSQL server from Debian's `postgresql` package, for stacks and benchmarks.

Production Airflow keeps its metadata in PostgreSQL, and SQLite serialises every writer, so
numbers measured on SQLite alone say little about a deployment. This starts a private cluster:
`initdb` into a temporary directory, `postgres` on a free loopback port with its socket in that
directory (no system service, no root-owned paths), one database, trust authentication for the
local user. `stop()` shuts it down fast and removes the directory.

    with PostgresServer() as pg:
        stack = AirflowStack(home, dags, database=pg.sqlalchemy_url("airflow"))

When the binaries are missing and we are root, `ensure_binaries()` installs the package with
apt-get (Debian's, as the image and CI use); otherwise it says what to install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from devstack.airflow_stack import free_port
from devstack.service import Service

__all__ = ["PostgresError", "PostgresServer", "ensure_binaries"]

_DEBIAN_ROOT = Path("/usr/lib/postgresql")
#: The unprivileged account the server runs as when we are root (postgres refuses root).
_SERVICE_USER = "postgres"


class PostgresError(RuntimeError):
    """The binaries are missing, or the server did not initialise or start."""


def _bin_dir() -> Path | None:
    """The newest Debian PostgreSQL binaries directory (`/usr/lib/postgresql/<v>/bin`)."""
    if not _DEBIAN_ROOT.is_dir():
        return None
    versions = sorted(
        (p for p in _DEBIAN_ROOT.iterdir() if (p / "bin" / "initdb").is_file()),
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    return versions[-1] / "bin" if versions else None


def ensure_binaries() -> Path:
    """The directory holding `initdb`, `postgres` and `pg_ctl`, installing Debian's package
    when missing and we are root."""
    found = _bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise PostgresError("PostgreSQL is not installed: apt-get install postgresql")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresError(f"{' '.join(argv)} failed: {done.stderr[-1500:]}")
    found = _bin_dir()
    if found is None:
        raise PostgresError("apt-get installed postgresql but no initdb was found")
    return found


class PostgresServer(Service):
    """A private PostgreSQL cluster on a free port; use as a context manager.

    :param root: Where the cluster lives (default: a new temporary directory, removed on stop).
    :param database: The database created for the caller.
    :param settings: Extra `postgres -c` settings (e.g. `{"max_connections": "300"}`).
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        database: str = "airflow",
        settings: dict[str, str] | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="hf-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.database = database
        self.settings = {
            # A benchmark cluster: durability buys nothing and costs fsyncs on every commit.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            **(settings or {}),
        }
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.user = _SERVICE_USER if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        self._proc: subprocess.Popen[bytes] | None = None
        self.bin_dir: Path | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def sqlalchemy_url(self, database: str | None = None) -> str:
        """What `[database] sql_alchemy_conn` takes: psycopg2 over TCP on loopback, named
        explicitly (SQLAlchemy 2.1 defaults `postgresql://` to psycopg 3); the api-server
        derives `postgresql+asyncpg` from it."""
        return (
            f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database or self.database}"
        )

    # -- lifecycle -------------------------------------------------------------------------

    def _as_user(self, argv: list[str]) -> list[str]:
        """Root runs the server binaries as the `postgres` account (initdb refuses root)."""
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", self.user, "--", *argv]

    def start(self) -> None:
        """initdb, start `postgres`, wait until it accepts connections, create the database."""
        self.bin_dir = ensure_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb = subprocess.run(
            self._as_user(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if initdb.returncode != 0:
            raise PostgresError(f"initdb failed: {initdb.stderr[-1500:]}")
        argv = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.socket_dir),
        ]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._as_user(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        self.psql("postgres", f'CREATE DATABASE "{self.database}"')

    def _wait_ready(self) -> None:
        assert self.bin_dir is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PostgresError(f"postgres exited:\n{self._log_tail()}")
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise PostgresError(f"postgres not ready after {self.startup_timeout_s:g} s")

    def psql(self, database: str, sql: str) -> str:
        """Run SQL through `psql` (unaligned, tuples only); returns its output."""
        done = subprocess.run(
            [
                "psql",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresError(f"psql failed: {done.stderr[-1500:]}")
        return done.stdout

    def table_sizes(self, database: str | None = None) -> dict[str, int]:
        """Bytes on disk per table (heap + indexes + TOAST), for growth measurements."""
        out = self.psql(
            database or self.database,
            "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = 'public'",
        )
        sizes: dict[str, int] = {}
        for line in out.splitlines():
            name, _, size = line.partition("|")
            if name:
                sizes[name] = int(size)
        return sizes

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if needed; remove a temporary root."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 2)  # SIGINT: "fast" shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=5)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
