"""Domain metrics (``/metrics`` of the web app) against a real SQLite history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from release_orchestrator import Client, Settings
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import engine, schedules
from release_orchestrator.storage.tables import ReleaseRow
from release_orchestrator.testing import FakeClock, MemoryTransport
from release_orchestrator.web.metrics import DomainCollector, FinalTally
from release_orchestrator.web.queries import environment_names

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)

BLUEPRINT = """
project: shop
environments:
  - name: staging
  - name: prod
    settings: {parallel_releases: true, max_parallel_releases: 5}
resources:
  - {type: database, name: orders, executor: simulated, spec: {size: 1}}
  - {type: service, name: web, executor: simulated, spec: {image: "web:1"}}
"""


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(T0)
        self.transport = MemoryTransport()
        self.client = Client(
            Settings(database_url=f"sqlite:///{tmp_path / 'relo.db'}", user="ops"),
            transport=self.transport,
            lock_store=MemoryLockStore(),
            clock=self.clock,
        )
        self.client.apply_blueprint_text(BLUEPRINT)
        self.collector = DomainCollector(self.client)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def work(self, seconds: float = 0.0) -> None:
        """Run what was handed to workers; each release takes ``seconds`` of fake time."""
        while self.transport.sent:
            for msg in self.transport.take():
                self._execute(msg.release_id, seconds)

    def _execute(self, release_id: int, seconds: float) -> None:
        engine.execute(self.client.ctx, release_id, "w1")
        if seconds:  # move the end (the engine stamps start and end with the fake clock)
            with self.client.ctx.db.session() as s:
                row = s.get(ReleaseRow, release_id)
                assert row is not None and row.started_at is not None
                row.finished_at = row.started_at + timedelta(seconds=seconds)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.client.ctx.db.dispose()


def test_queue_depth_running_pending_and_paused_per_environment(rig: Rig) -> None:
    c = rig.client
    c.submit("shop", "prod", "selective", targets=["web"])  # dispatched: counts as running
    c.pause("shop", "staging", reason="freeze")
    for _ in range(3):
        c.submit("shop", "staging", "full")
    c.settings("shop", "prod", approval=True)
    c.submit("shop", "prod", "full")  # pending approval
    staging, prod = {"project": "shop", "environment": "staging"}, {
        "project": "shop", "environment": "prod"}
    assert rig.value("relo_queue_depth", **staging) == 3
    assert rig.value("relo_queue_depth", **prod) == 1  # dispatched, not yet running
    assert rig.value("relo_releases_pending_approval", **prod) == 1
    assert rig.value("relo_environment_paused", **staging) == 1
    assert rig.value("relo_environment_paused", **prod) == 0
    assert rig.value("relo_releases_held", **staging, reason="environment_paused") == 3
    assert rig.value("relo_releases_held", **staging, reason="waiting_behind") == 2
    rig.transport.take()
    with c.ctx.db.session() as s:  # a worker claimed it
        s.execute(update(ReleaseRow).where(ReleaseRow.id == 1).values(status="running",
                                                                      started_at=T0))
    assert rig.value("relo_releases_running", **prod) == 1
    c.pause("shop", reason="audit")
    assert rig.value("relo_environment_paused", **prod) == 1


def test_lock_waits_count_queued_releases_held_by_a_state_lock(rig: Rig) -> None:
    c = rig.client
    c.submit("shop", "prod", "selective", targets=["web"])
    waiting = c.submit("shop", "prod", "selective", targets=["web"])
    free = c.submit("shop", "prod", "selective", targets=["orders"])
    held = {h.code for h in c.get(waiting.id).held}
    assert "state_lock_held" in held
    assert rig.value("relo_lock_waits", project="shop", environment="prod") == 1
    assert rig.value("relo_lock_waits", project="shop", environment="staging") == 0
    assert free.status.value == "queued" and not c.get(free.id).held


def test_finished_counts_and_duration_histogram_by_type_and_status(rig: Rig) -> None:
    c = rig.client
    c.submit("shop", "staging", "full")
    rig.work(seconds=45)
    c.set_resource("shop", "staging", "web", ["fail=true"])
    c.submit("shop", "staging", "selective", targets=["web"], no_rollback=True)
    rig.work(seconds=400)
    cancelled = c.submit("shop", "prod", "full")
    c.pause("shop", "prod")
    queued = c.submit("shop", "prod", "full")
    c.delete([queued.id])
    assert cancelled.id  # dispatched to nobody: stays queued, not counted
    full = {"type": "full", "status": "succeeded"}
    failed = {"type": "selective", "status": "failed"}
    assert rig.value("relo_releases_finished_total", **full) == 1
    assert rig.value("relo_releases_finished_total", **failed) == 1
    assert rig.value("relo_releases_finished_total", type="full", status="cancelled") == 1
    assert rig.value("relo_release_duration_seconds_count", **full) == 1
    assert rig.value("relo_release_duration_seconds_sum", **full) == 45
    assert rig.value("relo_release_duration_seconds_bucket", **full, le="30.0") == 0
    assert rig.value("relo_release_duration_seconds_bucket", **full, le="60.0") == 1
    assert rig.value("relo_release_duration_seconds_bucket", **full, le="+Inf") == 1
    assert rig.value("relo_release_duration_seconds_bucket", **failed, le="300.0") == 0
    assert rig.value("relo_release_duration_seconds_bucket", **failed, le="600.0") == 1
    # never started: no duration
    assert rig.value("relo_release_duration_seconds_count", type="full", status="cancelled") is None
    # scraping again counts nothing twice
    assert rig.value("relo_releases_finished_total", **full) == 1


def test_skipped_scheduled_releases_by_reason(rig: Rig) -> None:
    c = rig.client
    c.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    c.pause("shop", "staging")
    rig.clock.set(T0 + timedelta(minutes=1))
    assert schedules.tick(c.ctx)["schedule_skipped"] == 1
    c.resume("shop", "staging")
    c.pause_schedule("shop", "staging")
    rig.clock.set(T0 + timedelta(minutes=16))
    assert schedules.tick(c.ctx)["schedule_skipped"] == 1
    labels = {"project": "shop", "environment": "staging"}
    assert rig.value("relo_scheduled_releases_skipped_total", **labels, reason="paused") == 1
    assert (
        rig.value("relo_scheduled_releases_skipped_total", **labels, reason="schedule_paused")
        == 1
    )
    assert rig.value("relo_releases_finished_total", type="full", status="skipped") == 2


def _row(rid: int, env_id: int, status: str, created: datetime) -> ReleaseRow:
    return ReleaseRow(
        id=rid, environment_id=env_id, type="full", status=status, triggered_by="t",
        trigger="cli", targets=[], extra_args=[], extra_vars={}, created_at=created,
        started_at=created if status != "queued" else None,
        finished_at=created + timedelta(seconds=5) if status != "queued" else None,
    )


def test_tally_reads_incrementally_and_never_misses_a_late_commit(rig: Rig) -> None:
    c = rig.client
    c.submit("shop", "staging", "full")  # release 1: dispatched, never claimed
    with c.ctx.db.session(write=False) as s:
        env_id = {v: k for k, v in environment_names(s).items()}[("shop", "staging")]
    tally = FinalTally(settle=timedelta(minutes=5), batch=2)
    db = c.ctx.db

    def scrape() -> int:
        with db.session(write=False) as s:
            tally.update(s, rig.clock.now())
        return sum(tally.finished.values())

    with db.session() as s:
        s.add(_row(10, env_id, "succeeded", rig.clock.now()))
    assert scrape() == 1
    with db.session() as s:  # a lower id committed later (PostgreSQL sequences allow it)
        s.add(_row(5, env_id, "failed", rig.clock.now()))
    assert scrape() == 2
    assert tally.watermark == 0  # nothing settled yet: ids above 0 are all re-read
    rig.clock.advance(600)
    assert scrape() == 2
    assert tally.watermark == 10 and tally.counted_above == set()
    assert tally.pending == {1}  # release 1 is still queued, below the watermark
    with db.session() as s:
        s.add(_row(11, env_id, "queued", rig.clock.now()))
        s.add(_row(12, env_id, "succeeded", rig.clock.now()))
    assert scrape() == 3
    with db.session() as s:
        s.execute(update(ReleaseRow).where(ReleaseRow.id.in_([1, 11])).values(
            status="cancelled", finished_at=rig.clock.now()))
    assert scrape() == 5
    rig.clock.advance(600)
    assert scrape() == 5
    assert (tally.watermark, tally.pending, tally.counted_above) == (12, set(), set())
    assert tally.finished[("full", "cancelled")] == 2
