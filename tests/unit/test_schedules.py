"""Scheduled releases (SPEC §7, §11): the beat tick's claim of due times, skips with reasons,
collapse of missed fires, idempotency, and the client / CLI surface.

Real SQLite database, in-memory transport and locks, and a fake clock: the tick is driven by
calling ``schedules.tick`` (what the beat task runs) at chosen instants.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from release_orchestrator import Client, InvalidRequest, NotFound, Settings
from release_orchestrator.cli.common import reset_client
from release_orchestrator.cli.main import main
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import schedules
from release_orchestrator.storage.tables import EventRow, ReleaseRow, ScheduleRow
from release_orchestrator.testing import FakeClock, MemoryTransport

UTC = timezone.utc
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

BLUEPRINT = """
project: shop
environments:
  - name: staging
  - name: prod
resources:
  - type: database
    name: orders
    executor: simulated
    spec: {size: 10}
  - type: service
    name: web
    executor: simulated
    spec: {image: "web:1"}
    depends_on: [database/orders]
"""


def make_client(url: str, clock: FakeClock, user: str = "alice") -> Client:
    return Client(
        Settings(database_url=url, user=user),
        transport=MemoryTransport(),
        lock_store=MemoryLockStore(),
        clock=clock,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def client(sqlite_url: str, clock: FakeClock) -> Any:
    c = make_client(sqlite_url, clock)
    c.apply_blueprint_text(BLUEPRINT)
    yield c
    c.ctx.db.dispose()


def tick(c: Client) -> dict[str, int]:
    return schedules.tick(c.ctx)


def scheduled(c: Client) -> list[ReleaseRow]:
    """Every release recorded by a schedule (fired or skipped), oldest first."""
    with c.ctx.db.session(write=False) as s:
        return list(
            s.scalars(
                select(ReleaseRow)
                .where(ReleaseRow.trigger == "schedule", ReleaseRow.comment.is_not(None))
                .order_by(ReleaseRow.id)
            )
        )


def schedule_row(c: Client, env_id: int | None = None) -> ScheduleRow:
    with c.ctx.db.session(write=False) as s:
        rows = list(s.scalars(select(ScheduleRow).order_by(ScheduleRow.id)))
    return rows[0] if env_id is None else next(r for r in rows if r.environment_id == env_id)


def counts(c: Client) -> tuple[int, int, int]:
    with c.ctx.db.session(write=False) as s:
        return (
            s.scalar(select(func.count()).select_from(ScheduleRow)) or 0,
            s.scalar(select(func.count()).select_from(ReleaseRow)) or 0,
            s.scalar(select(func.count()).select_from(EventRow)) or 0,
        )


def sent_ids(c: Client) -> list[int]:
    transport = c.ctx.transport
    assert isinstance(transport, MemoryTransport)
    return [s.release_id for s in transport.sent]


# ----------------------------------------------------------------------------- set / show


def test_future_start_at_is_the_first_fire_and_show_lists_three(client: Client) -> None:
    view = client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=2))
    s = view.schedule
    assert (s.every, str(s.type), s.timezone, s.paused) == ("15m", "full", "UTC", False)
    assert s.next_run_at == T0 + timedelta(minutes=2)
    assert view.next_fires == [T0 + timedelta(minutes=m) for m in (2, 17, 32)]
    assert client.schedule("shop", "staging") == view


def test_past_start_at_fires_at_the_first_multiple_at_or_after_now(
    client: Client, clock: FakeClock
) -> None:
    clock.set(T0 + timedelta(minutes=31, seconds=5))
    view = client.set_schedule("shop", "staging", "15m", start_at="2026-01-05T12:00:00Z")
    assert view.schedule.start_at == T0
    assert view.next_fires[0] == T0 + timedelta(minutes=45)
    clock.set(T0 + timedelta(minutes=45))  # a past anchor exactly on a fire time: now counts
    again = client.set_schedule("shop", "staging", "15m", start_at=T0)
    assert again.next_fires[0] == T0 + timedelta(minutes=45)


def test_default_anchor_is_the_next_whole_minute_and_is_kept_on_change(
    client: Client, clock: FakeClock
) -> None:
    clock.set(T0 + timedelta(seconds=20))
    first = client.set_schedule("shop", "staging", "1d")
    assert first.schedule.start_at == T0 + timedelta(minutes=1)
    clock.advance(3600)
    changed = client.set_schedule("shop", "staging", "6h")
    assert changed.schedule.id == first.schedule.id
    assert changed.schedule.start_at == first.schedule.start_at
    assert changed.next_fires[0] == T0 + timedelta(hours=6, minutes=1)


def test_naive_start_at_is_a_wall_time_in_the_timezone(client: Client) -> None:
    view = client.set_schedule(
        "shop", "staging", "1d", start_at="2026-03-28T02:30", timezone="Europe/Berlin"
    )
    # 02:30 CET = 01:30 UTC; 29 March 02:30 does not exist (DST) -> 03:30 CEST = 01:30 UTC;
    # then 02:30 CEST = 00:30 UTC.
    assert view.schedule.start_at == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    assert view.next_fires == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": "0m"}, "--every must be"),
        ({"every": "5x"}, "--every must be"),
        ({"every": ""}, "--every must be"),
        ({"every": "15m", "start_at": "tomorrow"}, "--start-at must be an ISO 8601"),
        ({"every": "15m", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"every": "15m", "type": "selective"}, "cannot run selective"),
        ({"every": "15m", "type": "nightly"}, "unknown release type 'nightly'"),
        ({"every": "2w", "start_at": "9999-12-25T00:00:00Z"}, "beyond year 9999"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    client: Client, kwargs: dict[str, Any], message: str
) -> None:
    client.set_schedule("shop", "staging", "1h", start_at=T0 + timedelta(hours=1))
    before, row = counts(client), schedule_row(client)
    every = kwargs.pop("every")
    with pytest.raises(InvalidRequest, match=message):
        client.set_schedule("shop", "staging", every, **kwargs)
    assert counts(client) == before
    assert schedule_row(client).every == row.every == "1h"


def test_unknown_environment_or_missing_schedule_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound, match=r"unknown environment 'nope'.*existing: prod, staging"):
        client.set_schedule("shop", "nope", "15m")
    client.set_schedule("shop", "prod", "15m")
    with pytest.raises(NotFound, match=r"'shop/staging' has no schedule.*shop/prod"):
        client.schedule("shop", "staging")
    with pytest.raises(NotFound):
        client.pause_schedule("shop", "staging")
    with pytest.raises(NotFound):
        client.delete_schedule("shop", "staging")


# ----------------------------------------------------------------------------- the tick


def test_idle_environment_gets_a_scheduled_full_release(client: Client, clock: FakeClock) -> None:
    due = T0 + timedelta(minutes=1)
    client.set_schedule("shop", "staging", "15m", start_at=due)
    assert tick(client)["schedules_due"] == 0  # not due yet
    clock.set(due + timedelta(seconds=2))
    stats = tick(client)
    assert (stats["schedules_due"], stats["schedule_fired"]) == (1, 1)
    [row] = scheduled(client)
    release = client.get(row.id)
    assert str(release.trigger) == "schedule" and release.triggered_by == "schedule"
    assert str(release.type) == "full" and release.status.is_active
    assert (row.due_at, row.created_at) == (due, due + timedelta(seconds=2))
    assert sent_ids(client) == [row.id]  # dispatched to the environment's queue
    view = client.schedule("shop", "staging")
    assert view.schedule.next_run_at == due + timedelta(minutes=15)
    [run] = view.recent
    assert (run.release_id, run.due_at, run.skip_reason, run.lateness_s) == (row.id, due, None, 2)
    events = client.events("shop", "staging", limit=5)
    submitted = next(e for e in events if e.release_id == row.id)
    assert (submitted.kind, submitted.actor) == ("submitted", "schedule")
    assert submitted.data["due_at"] == due.isoformat()
    # the same instant again, and a little later: nothing more is due
    assert tick(client)["schedule_fired"] == 0
    clock.advance(60)
    assert tick(client)["schedules_due"] == 0
    assert len(scheduled(client)) == 1


def test_busy_environment_records_a_skip_and_the_manual_release_is_unaffected(
    client: Client, clock: FakeClock
) -> None:
    due = T0 + timedelta(minutes=1)
    client.set_schedule("shop", "staging", "15m", start_at=due)
    manual = client.submit("shop", "staging", "full", comment="by hand")
    clock.set(due)
    stats = tick(client)
    assert stats["schedule_skipped"] == 1 and stats["schedule_fired"] == 0
    [row] = scheduled(client)
    skipped = client.get(row.id)
    assert str(skipped.status) == "skipped" and str(skipped.skip_reason) == "busy"
    assert skipped.finished_at == due and str(skipped.trigger) == "schedule"
    assert f"release {manual.id}" in (skipped.error or "")
    assert sent_ids(client) == [manual.id]  # the skip is never dispatched
    assert client.get(manual.id).status == manual.status  # the manual release is untouched
    [run] = client.schedule("shop", "staging").recent
    assert (run.status.value, run.skip_reason and run.skip_reason.value) == ("skipped", "busy")
    event = next(e for e in client.events("shop", "staging") if e.release_id == row.id)
    assert (event.kind, event.data["reason"]) == ("skipped", "busy")


def test_paused_environment_and_project_record_paused(client: Client, clock: FakeClock) -> None:
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    client.pause("shop", "staging", reason="freeze")
    clock.set(T0 + timedelta(minutes=1))
    assert tick(client)["schedule_skipped"] == 1
    client.resume("shop", "staging")
    client.pause("shop", reason="audit")  # the whole project
    clock.set(T0 + timedelta(minutes=16))
    assert tick(client)["schedule_skipped"] == 1
    rows = scheduled(client)
    assert [r.skip_reason for r in rows] == ["paused", "paused"]
    assert "freeze" in (rows[0].error or "") and "project 'shop'" in (rows[1].error or "")


def test_paused_schedule_records_schedule_paused_then_resumes(
    client: Client, clock: FakeClock
) -> None:
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    assert client.pause_schedule("shop", "staging").schedule.paused
    clock.set(T0 + timedelta(minutes=1))
    assert tick(client)["schedule_skipped"] == 1
    assert not client.resume_schedule("shop", "staging").schedule.paused
    clock.set(T0 + timedelta(minutes=16))
    assert tick(client)["schedule_fired"] == 1
    assert [r.skip_reason for r in scheduled(client)] == ["schedule_paused", None]
    kinds = [e.kind for e in client.events("shop", "staging")]
    assert "schedule_paused" in kinds and "schedule_resumed" in kinds


def test_set_paused_creates_a_paused_schedule(client: Client, clock: FakeClock) -> None:
    client.set_schedule("shop", "staging", "1h", start_at=T0 + timedelta(minutes=1), paused=True)
    clock.set(T0 + timedelta(minutes=1))
    tick(client)
    assert [r.skip_reason for r in scheduled(client)] == ["schedule_paused"]


def test_outside_availability_window_records_outside_window(
    client: Client, clock: FakeClock
) -> None:
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    client.add_window("shop", "staging", kind="deny", cron="0 12 * * *", duration="1h")
    clock.set(T0 + timedelta(minutes=1))
    assert tick(client)["schedule_skipped"] == 1
    [row] = scheduled(client)
    assert row.skip_reason == "outside_window"


def test_pause_wins_over_schedule_pause_window_and_busy(client: Client, clock: FakeClock) -> None:
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1), paused=True)
    client.add_window("shop", "staging", kind="deny", cron="0 12 * * *", duration="1h")
    client.submit("shop", "staging")
    client.pause("shop", "staging")
    clock.set(T0 + timedelta(minutes=1))
    tick(client)
    assert [r.skip_reason for r in scheduled(client)] == ["paused"]


def test_missed_fires_collapse_into_one(client: Client, clock: FakeClock) -> None:
    first = T0 + timedelta(minutes=1)
    client.set_schedule("shop", "staging", "15m", start_at=first)
    # beat was down: due times first, +15m and +30m passed without a tick
    clock.set(first + timedelta(minutes=35))
    stats = tick(client)
    assert stats["schedule_fired"] == 1
    [row] = scheduled(client)
    assert row.due_at == first + timedelta(minutes=30)  # the latest missed due time
    assert schedule_row(client).next_run_at == first + timedelta(minutes=45)
    event = next(e for e in client.events("shop", "staging") if e.release_id == row.id)
    assert event.data["collapsed"] == 2 and "collapsed" in event.message
    assert tick(client)["schedules_due"] == 0


def test_shown_next_fires_follow_the_collapse_while_beat_is_behind(
    client: Client, clock: FakeClock
) -> None:
    first = T0 + timedelta(minutes=1)
    client.set_schedule("shop", "staging", "15m", start_at=first)
    clock.set(first + timedelta(minutes=35))
    view = client.schedule("shop", "staging")
    assert view.next_fires == [first + timedelta(minutes=m) for m in (30, 45, 60)]


def test_two_ticks_at_the_same_instant_fire_once(sqlite_url: str, clock: FakeClock) -> None:
    a = make_client(sqlite_url, clock)
    a.apply_blueprint_text(BLUEPRINT)
    b = make_client(sqlite_url, clock)
    a.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    clock.set(T0 + timedelta(minutes=1))
    assert tick(a)["schedule_fired"] == 1
    assert tick(b)["schedules_due"] == 0
    assert len(scheduled(a)) == 1


def test_a_stale_claim_loses_the_compare_and_set(client: Client, clock: FakeClock) -> None:
    """Two ticks read the same due row; the one that claims second records nothing."""
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    clock.set(T0 + timedelta(minutes=1))
    [(schedule_id, seen)] = schedules.due_schedules(client.ctx, clock.now())
    first = schedules.claim(client.ctx, schedule_id, seen)
    second = schedules.claim(client.ctx, schedule_id, seen)
    assert (first.kind, second.kind) == ("fired", "lost_race")
    assert len(scheduled(client)) == 1


def test_unique_due_time_is_the_last_fence(
    client: Client, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when next_run_at is moved back onto a recorded due time, it is not recorded twice:
    the pre-check advances it, and without the pre-check the UNIQUE constraint refuses it
    (the whole claim rolls back)."""
    due = T0 + timedelta(minutes=1)
    client.set_schedule("shop", "staging", "15m", start_at=due)
    clock.set(due)
    assert tick(client)["schedule_fired"] == 1

    def rewind() -> None:
        with client.ctx.db.session() as s:
            s.execute(update(ScheduleRow).values(next_run_at=due))

    rewind()
    assert tick(client)["schedule_advanced"] == 1
    assert schedule_row(client).next_run_at == due + timedelta(minutes=15)
    rewind()
    monkeypatch.setattr(schedules, "_recorded", lambda *_: False)
    assert tick(client)["schedule_lost_race"] == 1
    assert schedule_row(client).next_run_at == due  # rolled back with the refused insert
    assert len(scheduled(client)) == 1


def test_schedule_deleted_between_read_and_claim_is_gone(client: Client, clock: FakeClock) -> None:
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    clock.set(T0 + timedelta(minutes=1))
    [(schedule_id, seen)] = schedules.due_schedules(client.ctx, clock.now())
    gone = client.delete_schedule("shop", "staging")
    assert gone.every == "15m"
    assert schedules.claim(client.ctx, schedule_id, seen).kind == "gone"
    assert tick(client)["schedules_due"] == 0 and scheduled(client) == []


def test_history_survives_delete(client: Client, clock: FakeClock) -> None:
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    clock.set(T0 + timedelta(minutes=1))
    tick(client)
    client.delete_schedule("shop", "staging")
    [row] = scheduled(client)
    assert [r.id for r in client.list("shop", "staging")] == [row.id]
    assert "schedule_deleted" in [e.kind for e in client.events("shop", "staging")]


def test_one_broken_schedule_does_not_stop_the_others(client: Client, clock: FakeClock) -> None:
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    client.set_schedule("shop", "prod", "15m", start_at=T0 + timedelta(minutes=1))
    with client.ctx.db.session() as s:  # a row no valid input can produce
        s.execute(update(ScheduleRow).where(ScheduleRow.id == 1).values(every="bogus"))
    clock.set(T0 + timedelta(minutes=1))
    stats = tick(client)
    assert (stats["schedule_errors"], stats["schedule_fired"]) == (1, 1)


def test_approval_environment_gets_a_pending_release(client: Client, clock: FakeClock) -> None:
    client.settings("shop", "staging", approval=True)
    client.set_schedule("shop", "staging", "15m", start_at=T0 + timedelta(minutes=1))
    clock.set(T0 + timedelta(minutes=1))
    assert tick(client)["schedule_fired"] == 1
    [row] = scheduled(client)
    assert row.status == "pending_approval" and sent_ids(client) == []


def test_daily_schedule_follows_the_local_wall_clock_across_dst(
    client: Client, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    client.set_schedule(
        "shop", "staging", "1d", start_at="2026-03-28T03:00", timezone="Europe/Berlin"
    )
    fired = []
    for day in (28, 29, 30):  # 03:00 CET, then 03:00 CEST (clocks moved forward on the 29th)
        clock.set(datetime(2026, 3, day, 3, 0, tzinfo=UTC))
        tick(client)
        client.delete(all_queued=("shop", "staging"))  # keep the environment idle
        fired = [r.due_at for r in scheduled(client)]
    assert fired == [
        datetime(2026, 3, 28, 2, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 1, 0, tzinfo=UTC),
    ]


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(
    own_redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    monkeypatch.setenv("RELO_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("RELO_REDIS_URL", own_redis_url)
    monkeypatch.setenv("RELO_USER", "alice")
    reset_client()
    from release_orchestrator.cli import common

    real_client = common.client

    def memory_client() -> Client:  # the CLI's wiring, without a broker
        c = real_client()
        c.ctx.transport = MemoryTransport()
        return c

    monkeypatch.setattr("release_orchestrator.cli.schedules.client", memory_client)
    memory_client().apply_blueprint_text(BLUEPRINT)
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    reset_client()


def test_cli_set_show_pause_resume_delete(cli: Any) -> None:
    code, out, err = cli(
        "schedule", "set", "-p", "shop", "-e", "staging", "--every", "6h",
        "--start-at", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0 and out == "" and "every 6h" in err and "2099-01-01 00:00:00 UTC" in err
    code, out, _ = cli("schedule", "show", "-p", "shop", "-e", "staging")
    assert code == 0
    assert "2099-01-01 00:00:00 UTC; 2099-01-01 06:00:00 UTC; 2099-01-01 12:00:00 UTC" in out
    assert "no fires or skips yet" in out
    import json

    code, out, _ = cli("schedule", "show", "-p", "shop", "-e", "staging", "-o", "json")
    data = json.loads(out)
    assert data["schedule"]["every"] == "6h" and len(data["next_fires"]) == 3
    assert data["next_fires"][0].startswith("2099-01-01T00:00:00")
    assert cli("schedule", "pause", "-p", "shop", "-e", "staging")[0] == 0
    code, out, _ = cli("schedule", "show", "-p", "shop", "-e", "staging")
    assert "paused: due times are recorded as skipped" in out
    assert cli("schedule", "resume", "-p", "shop", "-e", "staging")[0] == 0
    code, _, err = cli("schedule", "delete", "-p", "shop", "-e", "staging")
    assert code == 0 and "deleted schedule shop/staging" in err
    code, _, err = cli("schedule", "show", "-p", "shop", "-e", "staging")
    assert code == 2 and "has no schedule" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--every", "0m"), "--every must be <positive integer><m|h|d|w>, got '0m'"),
        (("--every", "5x"), "--every must be <positive integer><m|h|d|w>, got '5x'"),
        (("--every", "15m", "--start-at", "soon"), "--start-at must be an ISO 8601 time"),
        (("--every", "15m", "--timezone", "Nowhere/Land"), "unknown timezone 'Nowhere/Land'"),
        (("--every", "15m", "--type", "destroy"), "cannot run destroy releases"),
        (("--every", "15m", "-o", "yaml"), "-o/--output must be table or json"),
        ((), "Missing option '--every'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_changes_nothing(
    cli: Any, args: tuple[str, ...], message: str
) -> None:
    code, _, _ = cli("schedule", "set", "-p", "shop", "-e", "staging", "--every", "1h")
    assert code == 0
    before = cli("schedule", "show", "-p", "shop", "-e", "staging", "-o", "json")[1]
    code, out, err = cli("schedule", "set", "-p", "shop", "-e", "staging", *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert cli("schedule", "show", "-p", "shop", "-e", "staging", "-o", "json")[1] == before


def test_cli_unknown_environment_names_what_exists(cli: Any) -> None:
    code, out, err = cli("schedule", "set", "-p", "shop", "-e", "stagin", "--every", "15m")
    assert code == 2 and out == ""
    assert err.strip() == (
        "relo: error: unknown environment 'stagin' in project 'shop'; existing: staging, prod"
    )
