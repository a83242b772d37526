"""A real `redis-server` (Debian's package) for the CeleryExecutor tests: the broker, on a free
port, with nothing on disk, started and stopped by the test that needs it.

Production uses Redis (or Valkey) as the Celery broker (`docker/docker-compose.yaml`, profile
`celery`), so the tests run the same server rather than a stand-in. Usage:

    with RedisServer(tmp_path) as redis:
        broker_url = redis.url(0)

`scripts/install-test-services.sh` installs it when missing (`apt-get install redis-server`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from devstack.service import Service, terminate_group

__all__ = ["INSTALL_HINT", "RedisServer", "find_redis_server"]

INSTALL_HINT = "apt-get install redis-server (or: bash scripts/install-test-services.sh)"


def find_redis_server() -> Path | None:
    """Debian's `redis-server` binary, or None when it is not installed."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer(Service):
    """One `redis-server` process on 127.0.0.1 and a free port; no persistence.

    :param workdir: Its working directory (the log goes there as `redis.log`).
    :param startup_timeout_s: How long to wait for the first `PING` answer.
    """

    def __init__(self, workdir: Path, *, startup_timeout_s: float = 15.0) -> None:
        self.workdir = Path(workdir)
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def url(self, db: int = 0) -> str:
        """`redis://127.0.0.1:<port>/<db>`, the form Celery's broker and backend settings take."""
        if self.port is None:
            raise RuntimeError("RedisServer is not started")
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; retries if the port was taken."""
        binary = find_redis_server()
        if binary is None:
            raise FileNotFoundError(f"redis-server is not installed: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            port = _free_port()
            argv = [
                str(binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.log_path),
                "--daemonize",
                "no",
            ]
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.port = port
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.log_path}")

    def ping(self) -> bool:
        """True when the server answers `PING` with `+PONG`."""
        if self.port is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        terminate_group(proc)
