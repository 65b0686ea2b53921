"""Two ticks claiming the same due times at the same moment (two beats, or two workers running
the tick) record exactly one release per due time: on one SQLite file and on PostgreSQL.

Each side is its own client (own engine and connections), as two processes would be. Both
ticks are held at a barrier after reading the due schedules, so every round is a real race:
both saw the same ``next_run_at`` and both try to claim it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from release_orchestrator import Client, Settings
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import schedules
from release_orchestrator.storage.tables import ReleaseRow
from release_orchestrator.testing import FakeClock, MemoryTransport

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
BLUEPRINT = """
project: shop
environments: [{name: staging}, {name: prod}]
resources:
  - {type: service, name: web, executor: simulated, spec: {image: "web:1"}}
"""
ROUNDS = 8
EVERY = timedelta(minutes=15)


def _client(url: str, clock: FakeClock) -> Client:
    return Client(
        Settings(database_url=url, user="alice"),
        transport=MemoryTransport(),
        lock_store=MemoryLockStore(),
        clock=clock,
    )


def _race(url: str, monkeypatch: pytest.MonkeyPatch, *, hold: bool = True) -> None:
    clock = FakeClock(T0)
    a, b = _client(url, clock), _client(url, clock)
    try:
        a.apply_blueprint_text(BLUEPRINT)
        first = T0 + timedelta(minutes=1)
        for env in ("staging", "prod"):
            a.set_schedule("shop", env, "15m", start_at=first)
        barrier = threading.Barrier(2, timeout=30)
        real_due: Callable[..., Any] = schedules.due_schedules

        def due_then_wait(ctx: Any, now: datetime) -> Any:
            found = real_due(ctx, now)
            if hold:
                barrier.wait()  # both ticks have read the same rows before either claims
            return found

        monkeypatch.setattr(schedules, "due_schedules", due_then_wait)
        totals: Counter[str] = Counter()
        errors: list[BaseException] = []

        def run(c: Client) -> None:
            try:
                totals.update(schedules.tick(c.ctx))
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        for k in range(ROUNDS):
            clock.set(first + k * EVERY + timedelta(seconds=1))
            threads = [threading.Thread(target=run, args=(c,)) for c in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            if k % 3 == 2:  # sometimes idle, sometimes busy: fires and skips both race
                a.delete(all_queued=("shop", "staging"))
        with a.ctx.db.session(write=False) as s:
            rows = list(s.scalars(select(ReleaseRow).where(ReleaseRow.trigger == "schedule")))
        per_due = Counter((r.schedule_id, r.due_at) for r in rows)
        expected = {(sid, first + k * EVERY) for sid in (1, 2) for k in range(ROUNDS)}
        assert set(per_due) == expected
        assert set(per_due.values()) == {1}
        recorded = totals["schedule_fired"] + totals["schedule_skipped"]
        assert recorded == 2 * ROUNDS
        assert totals["schedule_errors"] == 0
        if hold:
            # every claim that did not record found its due time taken by the other tick
            assert totals["schedule_lost_race"] == 2 * ROUNDS
            assert totals["schedules_due"] == 4 * ROUNDS
        assert {r.skip_reason for r in rows} >= {None, "busy"}
    finally:
        a.ctx.db.dispose()
        b.ctx.db.dispose()


def test_concurrent_ticks_on_one_sqlite_file_fire_each_due_time_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _race(sqlite_url, monkeypatch)


def test_concurrent_ticks_without_barrier_on_sqlite(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _race(sqlite_url, monkeypatch, hold=False)


@pytest.mark.postgres
def test_concurrent_ticks_on_postgresql_fire_each_due_time_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _race(pg_url, monkeypatch)
