"""Scheduled releases end to end (SPEC §7): real ``relo beat`` (ticking every second) and real
``relo worker`` processes, the shop example's scripts, minute-scale schedules made due within
seconds through ``--start-at``.

Run with ``RELO_TEST_REDIS_DB=13`` when other suites share the Redis server.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from release_orchestrator import Client, Settings
from release_orchestrator.testing import FakeClock, MemoryTransport

pytestmark = pytest.mark.integration

UTC = timezone.utc
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], stack: Any, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")


def set_schedule(stack: Any, env: str, start_at: datetime, *extra: str) -> datetime:
    """``relo schedule set`` (real CLI) every 1m from ``start_at``; returns the first due time."""
    out = stack.cli(
        "schedule", "set", "-p", "shop", "-e", env, "--every", "1m",
        "--start-at", start_at.isoformat(), *extra, "-o", "json", check=True,
    ).stdout  # fmt: skip
    first = datetime.fromisoformat(json.loads(out)["next_fires"][0])
    # the CLI may have started after start_at on a loaded machine: then the next minute
    assert first - start_at in (timedelta(0), timedelta(minutes=1)), (first, start_at)
    return first


def show(stack: Any, env: str) -> dict[str, Any]:
    out = stack.cli("schedule", "show", "-p", "shop", "-e", env, "-o", "json", check=True)
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def runs(stack: Any, env: str = "staging") -> list[Any]:
    """Fires and skips of the environment's schedule, oldest first."""
    return list(reversed(stack.client.schedule("shop", env, limit=50).recent))


def soon(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)


def ticks_sent(stack: Any, name: str) -> int:
    log = next(path for n, _, path in stack.procs if n == name)
    return log.read_text(errors="replace").count("Sending due task relo-tick")


def calls(stack: Any, release_id: int) -> list[str]:
    return [f[3] for f in stack.execution_log() if f[1] == str(release_id) and f[5] == "start"]


def test_idle_environment_gets_its_scheduled_release(stack: Any) -> None:
    stack.apply_shop()
    stack.worker()
    stack.start("beat")
    due = set_schedule(stack, "staging", soon(8))
    [run] = wait_for("the scheduled release", lambda: runs(stack), stack, timeout=90)
    assert run.due_at == due and run.skip_reason is None
    release = stack.wait_status(run.release_id)
    assert str(release.status) == "succeeded", release.error
    assert (str(release.trigger), release.triggered_by, str(release.type)) == (
        "schedule", "schedule", "full",
    )  # fmt: skip
    assert sorted(calls(stack, release.id)) == sorted(
        ["database/orders", "service/payments", "service/catalog", "service/frontend"]
    )
    assert 0 <= run.lateness_s < 30
    time.sleep(4)  # several more ticks: nothing else is due until the next minute
    data = show(stack, "staging")
    assert [r["release_id"] for r in data["recent"]] == [release.id]
    assert data["next_fires"][0] == (due + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    table = stack.cli("schedule", "show", "-p", "shop", "-e", "staging", check=True).stdout
    assert str(release.id) in table and "succeeded" in table


def test_busy_environment_records_a_skip_with_reason_busy(stack: Any) -> None:
    stack.apply_shop()
    stack.worker()
    stack.start("beat")
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "database/orders",
              "deploy_seconds=12", check=True)  # fmt: skip
    manual = int(stack.cli("release", "trigger", "-p", "shop", "-e", "staging", check=True).stdout)
    stack.wait_status(manual, {"running"})
    due = set_schedule(stack, "staging", soon(8))
    [run] = wait_for("the skip", lambda: runs(stack), stack, timeout=90)
    assert (run.due_at, str(run.status), str(run.skip_reason)) == (due, "skipped", "busy")
    assert f"release {manual} running" in (run.detail or "")
    assert calls(stack, run.release_id) == []
    # the manual release is unaffected by the schedule
    assert str(stack.wait_status(manual, timeout=90).status) == "succeeded"
    table = stack.cli("schedule", "show", "-p", "shop", "-e", "staging", check=True).stdout
    assert "busy" in table and "skipped" in table


def test_paused_environment_records_a_skip_with_reason_paused(stack: Any) -> None:
    stack.apply_shop()
    stack.worker()
    stack.start("beat")
    stack.cli("env", "pause", "-p", "shop", "-e", "staging", "--reason", "freeze", check=True)
    due = set_schedule(stack, "staging", soon(8))
    [run] = wait_for("the skip", lambda: runs(stack), stack, timeout=90)
    assert (run.due_at, str(run.skip_reason)) == (due, "paused")
    assert "freeze" in (run.detail or "")
    released = stack.client.list("shop", "staging")
    assert [(r.id, str(r.status)) for r in released] == [(run.release_id, "skipped")]
    assert stack.execution_log() == []


def test_two_beats_fire_each_due_time_once(stack: Any) -> None:
    stack.apply_shop()
    stack.worker(concurrency=3)  # ticks of both beats run side by side in the pool
    stack.start("beat", name="beat1")
    stack.start("beat", name="beat2")
    start = soon(12)  # two CLI calls before it; a missed start costs a minute
    due = {env: set_schedule(stack, env, start) for env in ("staging", "prod")}
    for env in due:
        wait_for(f"the {env} fire", lambda env=env: runs(stack, env), stack, timeout=90)
    sent = (ticks_sent(stack, "beat1"), ticks_sent(stack, "beat2"))
    time.sleep(6)  # several more ticks of both beats
    assert ticks_sent(stack, "beat1") > sent[0] and ticks_sent(stack, "beat2") > sent[1]
    fires = 0
    for env, first in due.items():
        recorded = runs(stack, env)
        # every due time fired once (on a slow machine the next minute's may be due already)
        counts = Counter(r.due_at for r in recorded)
        assert counts[first] == 1 and set(counts.values()) == {1}, recorded
        assert all(due_at - first in (timedelta(0), timedelta(minutes=1)) for due_at in counts)
        [run] = [r for r in recorded if r.due_at == first]
        assert str(stack.wait_status(run.release_id).status) == "succeeded"
        fires += len(recorded)
    everything = [r for env in due for r in stack.client.list("shop", env, limit=50)]
    assert len(everything) == fires and {str(r.trigger) for r in everything} == {"schedule"}


def test_missed_due_times_collapse_into_one_fire_after_beat_restarts(stack: Any) -> None:
    stack.apply_shop()
    stack.worker()
    beat = stack.start("beat", name="beat1")
    wait_for("a first tick", lambda: ticks_sent(stack, "beat1"), stack)
    stack.stop(beat)
    # While beat is down, the schedule is set as of 2m20s ago (a client whose clock reads
    # then): its due times now-2m20s, now-1m20s and now-20s pass without a tick.
    now = datetime.now(UTC).replace(microsecond=0)
    then = now - timedelta(minutes=2, seconds=20)
    past = Client(
        Settings(
            database_url=stack.env["RELO_DATABASE_URL"],
            redis_url=stack.env["RELO_REDIS_URL"],
            user="tester",
        ),
        transport=MemoryTransport(),
        clock=FakeClock(then),
    )
    try:
        past.set_schedule("shop", "staging", "1m", start_at=then)
    finally:
        past.ctx.db.dispose()
    missed = [then + timedelta(minutes=k) for k in range(3)]
    assert missed[-1] <= datetime.now(UTC) < then + timedelta(minutes=3)
    assert show(stack, "staging")["recent"] == []
    stack.start("beat", name="beat2")
    [run] = wait_for("the collapsed fire", lambda: runs(stack), stack, timeout=60)
    assert run.due_at == missed[-1]  # one fire for the latest missed due time, not three
    time.sleep(4)  # more ticks: still one
    assert [r.release_id for r in runs(stack)] == [run.release_id]
    assert str(stack.wait_status(run.release_id).status) == "succeeded"
    [event] = [
        e
        for e in stack.client.events("shop", "staging")
        if e.release_id == run.release_id and e.kind == "submitted"
    ]
    assert (event.actor, event.data["collapsed"]) == ("schedule", 2)
    assert show(stack, "staging")["schedule"]["next_run_at"] == (
        then + timedelta(minutes=3)
    ).isoformat().replace("+00:00", "Z")
