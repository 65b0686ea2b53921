"""Benchmark: fire lateness of scheduled releases (due time -> release submitted).

Two measurements:

* ``end-to-end``: a real ``relo beat`` and a real ``relo worker`` (subprocesses) on a fresh
  SQLite database and a Redis broker. ``--fires`` environments each get a ``--every 1m``
  schedule whose first due time is spread over ``--spread`` seconds; every due time fires
  once. Lateness is ``created_at - due_at`` of each scheduled release (the moment the claim
  transaction recorded it), and ``started_at - due_at`` (a worker began running it). Run once
  per ``RELO_SCHEDULE_TICK`` value in ``--ticks``: the tick period bounds the lateness (a due
  time waits for the next tick), so p50 is about half a tick plus the task round trip.
* ``claim``: relo's own cost, in process: :func:`schedules.claim` of one due schedule (compare-
  and-set, skip rules, release row, audit event, admission) on SQLite, ``--claims`` times.

Percentiles are nearest-rank; with few fires p99 is the maximum.

Usage: ``python benchmarks/bench_schedule.py [--redis redis://127.0.0.1:6379/9]
[--ticks 1,5] [--fires 30] [--spread 40]``. The Redis database is used as the Celery broker;
use one no other relo worker consumes.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from release_orchestrator import Client, Settings
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import schedules
from release_orchestrator.testing import FakeClock, MemoryTransport

DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
UTC = timezone.utc


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "mean": math.nan}
    return {
        "p50": _percentile(ordered, 50),
        "p99": _percentile(ordered, 99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def _blueprint(project: str, n: int) -> str:
    envs = "\n".join(f"  - name: e{i:03d}" for i in range(n))
    return (
        f"project: {project}\nenvironments:\n{envs}\nresources:\n"
        "  - {type: service, name: app, executor: simulated, spec: {duration: 0}}\n"
    )


class _Procs:
    """``relo worker`` / ``relo beat`` subprocesses of one run; stopped by their own ids."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str, ready: str) -> None:
        log = self.workdir / f"{args[0]}{len(self.procs)}.log"
        argv = [sys.executable, "-m", "release_orchestrator.cli.main", *args]
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=str(self.workdir),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((proc, log))
        deadline = time.monotonic() + 60
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def end_to_end(
    tick: float,
    *,
    fires: int = 30,
    spread: float = 40.0,
    redis_url: str = DEFAULT_REDIS,
    concurrency: int = 2,
) -> dict[str, Any]:
    """One run with real beat + worker at ``RELO_SCHEDULE_TICK=tick``; returns a result row."""
    with tempfile.TemporaryDirectory(prefix="relo-bench-schedule-") as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'relo.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RELO_", "CELERY"))}
        env.update(
            RELO_DATABASE_URL=db_url,
            RELO_REDIS_URL=redis_url,
            RELO_SCHEDULE_TICK=str(tick),
            RELO_FOLLOW_INTERVAL="1",
            RELO_USER="bench",
            PYTHONUNBUFFERED="1",
        )
        settings = Settings(database_url=db_url, redis_url=redis_url, user="bench")
        client = Client(settings, transport=MemoryTransport())
        project = f"bench{uuid.uuid4().hex[:8]}"
        client.apply_blueprint_text(_blueprint(project, fires))
        procs = _Procs(workdir, env)
        try:
            procs.start("worker", f"--concurrency={concurrency}", ready="ready.")
            procs.start("beat", ready="beat: Starting")
            lead = 3.0
            t0 = datetime.now(UTC) + timedelta(seconds=lead)
            due = {}
            for i in range(fires):
                start = t0 + timedelta(seconds=spread * i / max(1, fires - 1))
                view = client.set_schedule(project, f"e{i:03d}", "1m", start_at=start)
                due[f"e{i:03d}"] = view.schedule.next_run_at
            deadline = time.monotonic() + lead + spread + 3 * tick + 60
            late: list[float] = []
            started: list[float] = []
            pending = set(due)
            while pending and time.monotonic() < deadline:
                time.sleep(0.5)
                for name in sorted(pending):
                    recent = client.schedule(project, name).recent
                    if not recent:
                        continue
                    release = client.get(recent[-1].release_id)
                    if release.started_at is None and not release.status.is_final:
                        continue
                    run = recent[-1]
                    assert run.due_at == due[name], (name, run.due_at, due[name])
                    late.append(run.lateness_s)
                    if release.started_at is not None:
                        started.append((release.started_at - run.due_at).total_seconds())
                    pending.discard(name)
            if pending:
                raise RuntimeError(f"{len(pending)} of {fires} due times never fired")
        finally:
            procs.stop()
            client.ctx.db.dispose()
    submitted, start = _summary(late), _summary(started)
    return {
        "mode": "end-to-end",
        "tick_s": tick,
        "fires": len(late),
        "p50_s": submitted["p50"],
        "p99_s": submitted["p99"],
        "max_s": submitted["max"],
        "mean_s": submitted["mean"],
        "start_p50_s": start["p50"],
        "start_p99_s": start["p99"],
    }


def claim_cost(claims: int = 200) -> dict[str, Any]:
    """relo's own work per fire: one :func:`schedules.claim` on SQLite, in process."""
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="relo-bench-claim-") as tmp:
        clock = FakeClock(t0)
        client = Client(
            Settings(database_url=f"sqlite:///{Path(tmp) / 'relo.db'}", user="bench"),
            transport=MemoryTransport(),
            lock_store=MemoryLockStore(),
            clock=clock,
        )
        client.apply_blueprint_text(_blueprint("claims", claims))
        for i in range(claims):
            client.set_schedule("claims", f"e{i:03d}", "1m", start_at=t0 + timedelta(minutes=1))
        clock.set(t0 + timedelta(minutes=1))
        durations = []
        for schedule_id, seen in schedules.due_schedules(client.ctx, clock.now()):
            began = time.perf_counter()
            outcome = schedules.claim(client.ctx, schedule_id, seen)
            durations.append(time.perf_counter() - began)
            assert outcome.kind == "fired", outcome
        client.ctx.db.dispose()
    cost = _summary(durations)
    return {
        "mode": "claim",
        "tick_s": None,
        "fires": len(durations),
        "p50_s": cost["p50"],
        "p99_s": cost["p99"],
        "max_s": cost["max"],
        "mean_s": cost["mean"],
        "start_p50_s": None,
        "start_p99_s": None,
    }


def run(
    redis_url: str = DEFAULT_REDIS,
    *,
    ticks: Sequence[float] = (1.0, 5.0),
    fires: int = 30,
    spread: float = 40.0,
    claims: int = 200,
) -> list[dict[str, Any]]:
    """Every measurement: one ``end-to-end`` row per tick period, then the ``claim`` row.

    Row keys: ``mode``, ``tick_s``, ``fires``, ``p50_s``, ``p99_s``, ``max_s``, ``mean_s``
    (due -> submitted, seconds) and ``start_p50_s``, ``start_p99_s`` (due -> started; None for
    ``claim``, whose times are the cost of one claim).
    """
    rows = [end_to_end(t, fires=fires, spread=spread, redis_url=redis_url) for t in ticks]
    rows.append(claim_cost(claims))
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| measurement | RELO_SCHEDULE_TICK | fires | due → submitted p50 / p99 / max "
        "| due → started p50 / p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["mode"] == "claim":
            lines.append(
                f"| claim() in process, SQLite | - | {r['fires']} "
                f"| {r['p50_s'] * 1000:.1f} / {r['p99_s'] * 1000:.1f} / "
                f"{r['max_s'] * 1000:.1f} ms | - |"
            )
            continue
        lines.append(
            f"| real beat + worker, SQLite | {r['tick_s']:g} s | {r['fires']} "
            f"| {r['p50_s']:.2f} / {r['p99_s']:.2f} / {r['max_s']:.2f} s "
            f"| {r['start_p50_s']:.2f} / {r['start_p99_s']:.2f} s |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="broker (default: %(default)s)")
    parser.add_argument("--ticks", default="1,5", help="tick periods, seconds (default: 1,5)")
    parser.add_argument("--fires", type=int, default=30, help="due times per run (default: 30)")
    parser.add_argument("--spread", type=float, default=40.0, help="seconds (default: 40)")
    parser.add_argument("--claims", type=int, default=200, help="claims timed (default: 200)")
    args = parser.parse_args(argv)
    ticks = [float(t) for t in args.ticks.split(",") if t.strip()]
    rows = run(args.redis, ticks=ticks, fires=args.fires, spread=args.spread, claims=args.claims)
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; schedules every 1m, due "
        f"times spread over {args.spread:g} s; worker --concurrency 2; nearest-rank percentiles"
    )
    print()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
