"""A Redis server and a PostgreSQL server of the test's own, on free ports: their counters
(connections received) belong to this test alone, and they can be stopped and restarted
without touching the shared ones other tests and people use."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from tests.browser import ROOT, database_url, free_port

# A Telegram channel, whose webhook deliveries the worker-kill test sends.
from tests.channels.webhooks.conftest import telegram_channel  # noqa: F401

# The live chat world (an inbox, its widget channel, agents in teams) for the cross-process test.
from tests.livechat.conftest import chat  # noqa: F401

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# Debian keeps the server binaries per major version, off PATH (the newest installed one);
# elsewhere they are on it.
PG_BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin"),
    key=lambda path: int(path.parent.name),
    default=Path(shutil.which("pg_ctl") or "/usr/bin/pg_ctl").parent,
)
# Loopback only, and no password: nobody else can reach it.
INITDB_OPTIONS = ["-A", "trust", "-U", "postgres", "-E", "UTF8"]
# One task at a time, and none of the cluster chatter a lone worker does not need.
WORKER_OPTIONS = [
    "--concurrency=1",
    "--loglevel=INFO",
    "--without-mingle",
    "--without-gossip",
    "--without-heartbeat",
]


@dataclass
class PrivateRedis:
    port: int
    root: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not come up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def info(self, section: str) -> dict[str, Any]:
        with redis.Redis(port=self.port, socket_timeout=2) as client:
            return dict(client.info(section))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(port=free_port(), root=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def on_private_redis(settings: Any, private_redis: PrivateRedis) -> PrivateRedis:
    """Point the rate limiter, the cache and the shipped channel layer at the private server."""
    settings.REDIS_URL = private_redis.url
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": private_redis.url},
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": settings.REDIS_CHANNEL_LAYERS[settings.REDIS_CHANNEL_LAYER_DEFAULT],
            "CONFIG": {"hosts": [private_redis.url], "prefix": "scale"},
        }
    }
    return private_redis


def _as_postgres() -> list[str]:
    """initdb and the server refuse to run as root: as root, they run as `postgres`."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PrivatePostgres:
    """A throwaway cluster (no fsync: nothing here must survive a crash of the machine)."""

    port: int
    root: Path
    running: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "portcullis") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=30,
        )

    def init(self) -> None:
        subprocess.run(
            [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(self.data), "--no-sync", *INITDB_OPTIONS],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
        self._ctl("-l", str(self.root / "postgres.log"), "-w", "-o", options, "start")
        self.running = True

    def stop(self) -> None:
        """A restart's first half: `fast` ends the open sessions at once, as a deploy does."""
        self._ctl("-m", "fast", "-w", "stop")
        self.running = False

    def copy_test_database(self, name: str = "portcullis") -> str:
        """The test database as it stands (schema and the rows the test committed), copied
        here with pg_dump: a migration run would take longer than the whole test."""
        db = connection.settings_dict
        env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
        source = ["-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"]]
        target = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run([str(PG_BIN / "createdb"), *target, name], check=True, env=env, timeout=30)
        dump = subprocess.run(
            [str(PG_BIN / "pg_dump"), *source, "--no-owner", "--no-privileges", db["NAME"]],
            check=True,
            capture_output=True,
            env=env,
            timeout=60,
        )
        subprocess.run(
            [str(PG_BIN / "psql"), *target, "-q", "-v", "ON_ERROR_STOP=1", "-d", name],
            input=dump.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
            timeout=60,
        )
        return self.url(name)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under tmp_path: pytest's base directory is private to the user running the tests,
    # and the server may run as another one.
    root = Path(tempfile.mkdtemp(prefix="portcullis-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    server = PrivatePostgres(port=free_port(), root=root)
    server.init()
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def celery_worker_process(
    log: Path, *, pool: str = "solo", **settings_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker as production runs it, in a process of its own, one task at a time
    (`prefork`: in a child process), on the test database; `settings_env` as for serve_app.
    Killed when the block ends."""
    env = {**os.environ, "DATABASE_URL": database_url(), **settings_env}
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", f"--pool={pool}", *WORKER_OPTIONS],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def pool_children(worker: subprocess.Popen[bytes]) -> list[int]:
    """The worker's pool processes (Linux: the kernel lists a process's children)."""
    return [int(pid) for pid in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]
