"""Shared fixtures: settings on temp databases, and real relo processes for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: Redis database the integration tests own (flushed before each test).
#: With pytest-xdist each worker process gets its own database (gw0 → 8, gw1 → 9, ... gw7 →
#: 15: Redis has 16), shared by nothing else: tests that leave keys behind use unique prefixes.
_XDIST = os.environ.get("PYTEST_XDIST_WORKER", "")
REDIS_DB = int(os.environ.get("RELO_TEST_REDIS_DB", "8")) + (
    int(_XDIST[2:]) if _XDIST.startswith("gw") else 0
)
PG_ADMIN_URL = os.environ.get("RELO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def redis_url(db: int = REDIS_DB) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def hint_of(client: Any, release_id: int) -> dict[str, Any]:
    """The lock hint the dispatcher puts in a release's message (to forge duplicates)."""
    from release_orchestrator.services.dispatch import lock_hint
    from release_orchestrator.storage.repository import Repository

    with client.ctx.db.session(write=False) as s:
        row, prow, erow = Repository(s).release_for_claim(release_id)
        return lock_hint(row, prow.name, erow.name)


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture
def own_redis_url() -> str:
    """This pytest worker's own Redis database, emptied: CLI unit tests that reach Redis (state
    locks read by admission) must not see another worker's integration stack."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError:
        pass  # no Redis: the tests that need it fail on their own terms
    finally:
        client.close()
    return redis_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'relo.db'}"


@pytest.fixture
def memory_client(sqlite_url: str) -> Any:
    """A client on a fresh SQLite database with in-memory transport and locks."""
    from release_orchestrator import Client, Settings
    from release_orchestrator.locks import MemoryLockStore
    from release_orchestrator.testing import MemoryTransport

    return Client(Settings(database_url=sqlite_url), transport=MemoryTransport(),
                  lock_store=MemoryLockStore())


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """Admin URL of the local PostgreSQL (tests create a fresh database each)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
                           isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(f"PostgreSQL is not answering at 127.0.0.1:5432: {exc}")
    yield PG_ADMIN_URL
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"relo_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin.replace("postgresql://", "postgresql+psycopg://"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = pg_admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
        ), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


class Stack:
    """Real relo processes (workers, beat) on a temp SQLite database and Redis DB ``REDIS_DB``.

    ``cli(...)`` runs the real ``relo`` command in a subprocess; ``client`` is an in-process
    client on the same database, Redis and broker.
    """

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.tmp = tmp_path
        self.state_dir = tmp_path / "state"
        self.state_dir.mkdir(exist_ok=True)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RELO_", "CELERY"))
        }
        self.env.update({
            "RELO_DATABASE_URL": settings.pop("database_url", f"sqlite:///{tmp_path / 'relo.db'}"),
            "RELO_REDIS_URL": redis_url(),
            "RELO_LOCK_TTL": str(settings.pop("lock_ttl", 10)),
            "RELO_SCHEDULE_TICK": str(settings.pop("schedule_tick", 1)),
            "RELO_FOLLOW_INTERVAL": "1",
            "RELO_REDISPATCH_AFTER": str(settings.pop("redispatch_after", 5)),
            "RELO_USER": "tester",
            "SHOP_STATE_DIR": str(self.state_dir),
            "SHOP_DEPLOY_SECONDS": str(settings.pop("deploy_seconds", 0.2)),
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update({k: str(v) for k, v in settings.items()})
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._client: Any = None

    # -- processes ---------------------------------------------------------------------
    def start(self, kind: str, *args: str, name: str | None = None,
              wait_ready: bool = True) -> subprocess.Popen[bytes]:
        name = name or f"{kind}{len(self.procs) + 1}"
        log = self.tmp / f"{name}.log"
        argv = [sys.executable, "-m", "release_orchestrator.cli.main", kind, *args]
        if kind == "worker" and not any(a.startswith(("--hostname", "-n")) for a in args):
            argv += ["--hostname", f"{name}@%h"]
        with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(argv, env=self.env, stdout=handle,
                                    stderr=subprocess.STDOUT, cwd=str(self.tmp),
                                    start_new_session=True)
        self.procs.append((name, proc, log))
        if wait_ready and kind == "worker":
            self.wait_for_log(log, "ready.", proc)
        if wait_ready and kind == "beat":
            self.wait_for_log(log, "beat: Starting", proc)
        return proc

    def worker(self, *args: str, name: str | None = None, concurrency: int = 2
               ) -> subprocess.Popen[bytes]:
        return self.start("worker", f"--concurrency={concurrency}", *args, name=name)

    @staticmethod
    def wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes],
                     timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.exists() and text in log.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                raise AssertionError(f"process exited early:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        raise AssertionError(f"'{text}' not in {log} after {timeout}s:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             timeout: float = 20) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def close(self) -> None:
        for _, proc, _ in self.procs:
            self.stop(proc, signal.SIGTERM, timeout=15)
        if self._client is not None:
            self._client.ctx.db.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{log.read_text(errors='replace')[-4000:]}"
                         for n, _, log in self.procs)

    # -- commands ------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = False, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "release_orchestrator.cli.main", *args], env=self.env,
            capture_output=True, text=True, timeout=timeout, cwd=str(self.tmp), input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"relo {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    @property
    def client(self) -> Any:
        if self._client is None:
            from release_orchestrator import Client, Settings

            saved = dict(os.environ)
            os.environ.update({k: v for k, v in self.env.items() if k.startswith("RELO_")})
            try:
                self._client = Client(Settings())
            finally:
                os.environ.clear()
                os.environ.update(saved)
        return self._client

    def apply_shop(self, **overrides: Any) -> None:
        self.cli("blueprint", "apply", "-f", str(ROOT / "examples/shop/shop.yaml"), check=True)

    def execution_log(self) -> list[list[str]]:
        path = self.state_dir / "execution.log"
        if not path.exists():
            return []
        return [line.split() for line in path.read_text().splitlines() if line.strip()]

    def wait_status(self, release_id: int, statuses: set[str] | None = None,
                    timeout: float = 60) -> Any:
        from release_orchestrator.domain import FINAL_STATUSES

        wanted = statuses or {str(s) for s in FINAL_STATUSES}
        deadline = time.monotonic() + timeout
        release = None
        while time.monotonic() < deadline:
            release = self.client.get(release_id)
            if str(release.status) in wanted:
                return release
            time.sleep(0.1)
        details = ""
        if release is not None:
            details = (f"held: {release.held}\n" + self.cli("lock", "list", "-p", release.project,
                       "-e", release.environment, "-o", "json").stdout)
        raise AssertionError(f"release {release_id} still {release and release.status}\n"
                             f"{details}\n" + self.logs())


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A fresh relo stack (nothing started yet) on the integration Redis DB, flushed."""
    if not redis_available():
        pytest.fail("Redis is not answering on 127.0.0.1:6379 (start it; .ci/run does)")
    import redis

    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB).flushdb()
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()
