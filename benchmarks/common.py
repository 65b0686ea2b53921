"""Shared pieces of the benchmarks: statistics, machine facts, worker processes, CPU use.

By default :mod:`benchmarks.run` starts a private ``redis-server`` on a free port
(:class:`PrivateRedis`): the test suites and other users of the shared Redis flush and use
numbered databases, which would corrupt a run (and be disturbed by it). With ``--redis URL``
the benchmarks own that database instead (flushed by :func:`flush_redis` at the start).
SQLite files are temporary (or ``--database-url`` for PostgreSQL: every benchmark then creates
its own project names, so one database can hold several runs).
Workers are real subprocesses, started in their own session and stopped by their own
process-group id.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Redis database used when a benchmark module is run on its own (flushed at start).
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
UTC = timezone.utc
FINAL = ("succeeded", "failed", "rolled_back", "rollback_failed", "cancelled", "rejected",
         "skipped")


# -- statistics ------------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    data = [v for v in values if not math.isnan(v)]
    return statistics.median(data) if data else math.nan


def latency_row(name: str, reps: Sequence[Sequence[float]], **extra: Any) -> dict[str, Any]:
    """One result row from per-repetition latency samples (seconds).

    ``p50_ms``/``p99_ms`` are the medians over the repetitions of each repetition's p50/p99;
    ``p50_all_ms``/``p99_all_ms`` pool every sample.
    """
    pooled = [v for rep in reps for v in rep]
    return {
        "name": name,
        "repeat": len(reps),
        "samples": len(pooled),
        "p50_ms": median(percentile(rep, 50) * 1000 for rep in reps),
        "p99_ms": median(percentile(rep, 99) * 1000 for rep in reps),
        "p50_all_ms": percentile(pooled, 50) * 1000,
        "p99_all_ms": percentile(pooled, 99) * 1000,
        "reps_p50_ms": [round(percentile(rep, 50) * 1000, 3) for rep in reps],
        **extra,
    }


def rate_row(name: str, rates: Sequence[float], **extra: Any) -> dict[str, Any]:
    """One result row from per-repetition rates (items/s): median, min, max."""
    return {
        "name": name,
        "repeat": len(rates),
        "per_s": median(rates),
        "min_per_s": min(rates) if rates else math.nan,
        "max_per_s": max(rates) if rates else math.nan,
        "reps_per_s": [round(r, 1) for r in rates],
        **extra,
    }


def fmt_ratio(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}x"


# -- machine and versions ----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "?"
    ram_gib = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan, math.nan, math.nan)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(ram_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "loadavg": tuple(round(x, 2) for x in load),
    }


def versions(redis_url: str) -> dict[str, str]:
    from importlib.metadata import version

    import redis

    out = {"python": platform.python_version()}
    for dist in ("celery", "kombu", "redis", "SQLAlchemy"):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = "?"
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        out["redis-server"] = str(client.info("server").get("redis_version", "?"))
        client.close()
    except Exception:
        out["redis-server"] = "?"
    return out


def flush_redis(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


# -- processes ---------------------------------------------------------------------------------
def base_env(**relo: str) -> dict[str, str]:
    """The environment of benchmark subprocesses: ours minus RELO_*/CELERY*, plus ``relo``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELO_", "CELERY"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in relo.items()})
    return env


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the benchmark process dies, even by SIGKILL (Linux).

    A worker left behind would consume the next run's queues (same Redis database).
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the finally blocks still stop the workers
        pass


class PrivateRedis:
    """A throw-away ``redis-server`` on a free loopback port, no persistence."""

    def __init__(self, workdir: Path, binary: str = "redis-server") -> None:
        import socket

        import redis

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log = workdir / "redis.log"
        with self.log.open("wb") as handle:
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(workdir), "--maxmemory-policy",
                 "noeviction"],
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                break
            except redis.exceptions.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start: "
                                       + self.log.read_text(errors="replace")[-2000:]) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def other_clients(redis_url: str) -> int:
    """Connections to the benchmark's Redis database other than this one (a leftover worker
    or another user of the database would disturb the figures)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        return sum(1 for c in client.client_list() if int(c.get("db", -1)) == db) - 1
    finally:
        client.close()


class Procs:
    """Subprocesses of one benchmark; each in its own session, stopped by its group id."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, argv: Sequence[str], env: dict[str, str], *, name: str,
              ready: str | None = "ready.", timeout: float = 120) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(list(argv), env=env, cwd=str(self.workdir), stdout=handle,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        self.procs.append((proc, log))
        if ready is not None:
            deadline = time.monotonic() + timeout
            while ready not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = log.read_text(errors="replace")[-4000:]
                    self.stop(proc)
                    raise RuntimeError(f"{name} did not become ready:\n{text}")
                time.sleep(0.1)
        return proc

    def relo_worker(self, env: dict[str, str], *args: str, name: str = "relo-worker",
                    concurrency: int = 2, ready: str = "ready.") -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "release_orchestrator.cli.main", "worker",
                f"--concurrency={concurrency}", "--loglevel=INFO",
                "--hostname", f"{name}@%h", *args]
        return self.start(argv, env, name=name, ready=ready)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc, _ in reversed(self.procs):
            self.stop(proc)

    def log_tail(self, proc: subprocess.Popen[bytes], size: int = 3000) -> str:
        for p, log in self.procs:
            if p is proc:
                return log.read_text(errors="replace")[-size:]
        return ""


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / tick


def tree_cpu_share(pid: int, seconds: float) -> float:
    """Fraction of one core the process tree of ``pid`` used over ``seconds``."""
    pids = descendants(pid)
    before, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    after, t1 = cpu_seconds(pids), time.monotonic()
    return (after - before) / (t1 - t0)


# -- relo helpers --------------------------------------------------------------------------------
def blueprint(project: str, environments: Sequence[str],
              resources: Sequence[str] = ("service/app",),
              settings: dict[str, Any] | None = None) -> str:
    """A blueprint of ``simulated`` resources at duration 0."""
    lines = [f"project: {project}", "environments:"]
    for name in environments:
        extra = ""
        if settings:
            inner = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}"
                              for k, v in settings.items())
            extra = f", settings: {{{inner}}}"
        lines.append(f"  - {{name: {name}{extra}}}")
    lines.append("resources:")
    for key in resources:
        rtype, _, name = key.partition("/")
        lines.append(f"  - {{type: {rtype}, name: {name}, executor: simulated, "
                     "spec: {duration: 0}}")
    return "\n".join(lines) + "\n"


def relo_client(database_url: str, redis_url: str) -> Any:
    """An in-process client publishing with the real Celery transport."""
    from release_orchestrator import Client, Settings

    return Client(Settings(database_url=database_url, redis_url=redis_url, user="bench"))


def relo_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return base_env(RELO_DATABASE_URL=database_url, RELO_REDIS_URL=redis_url, RELO_USER="bench",
                    **extra)


def statuses(client: Any, ids: Sequence[int]) -> dict[int, str]:
    from sqlalchemy import text

    out: dict[int, str] = {}
    with client.ctx.db.session(write=False) as s:
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            marks = ",".join(str(int(i)) for i in chunk)
            query = text(f"SELECT id, status FROM releases WHERE id IN ({marks})")
            for rid, status in s.execute(query):
                out[int(rid)] = str(status)
    return out


def wait_final(client: Any, ids: Sequence[int], timeout: float = 120,
               interval: float = 0.01) -> dict[int, str]:
    """Poll until every release is final; returns their statuses."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    final: dict[int, str] = {}
    while pending:
        got = statuses(client, pending)
        for rid, status in got.items():
            if status in FINAL:
                final[rid] = status
        pending = [r for r in pending if r not in final]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} release(s) not final after {timeout}s: "
                               f"{pending[:5]} {[got.get(p) for p in pending[:5]]}")
        time.sleep(interval)
    return final


def first_step_started(client: Any, ids: Sequence[int]) -> dict[int, datetime]:
    """``started_at`` of each release's first step (aware UTC)."""
    from sqlalchemy import text

    out: dict[int, datetime] = {}
    with client.ctx.db.session(write=False) as s:
        for start in range(0, len(ids), 500):
            marks = ",".join(str(int(i)) for i in ids[start:start + 500])
            rows = s.execute(text(
                f"SELECT release_id, MIN(started_at) FROM steps WHERE release_id IN ({marks}) "
                "GROUP BY release_id"))
            for rid, started in rows:
                if isinstance(started, str):
                    started = datetime.fromisoformat(started)
                if started.tzinfo is None:
                    started = started.replace(tzinfo=UTC)
                out[int(rid)] = started
    return out


def finished_times(client: Any, ids: Sequence[int]) -> dict[int, datetime]:
    from sqlalchemy import text

    out: dict[int, datetime] = {}
    with client.ctx.db.session(write=False) as s:
        for start in range(0, len(ids), 500):
            marks = ",".join(str(int(i)) for i in ids[start:start + 500])
            for rid, fin in s.execute(text(
                    f"SELECT id, finished_at FROM releases WHERE id IN ({marks})")):
                if fin is None:
                    continue
                if isinstance(fin, str):
                    fin = datetime.fromisoformat(fin)
                if fin.tzinfo is None:
                    fin = fin.replace(tzinfo=UTC)
                out[int(rid)] = fin
    return out


def now() -> datetime:
    return datetime.now(UTC)
