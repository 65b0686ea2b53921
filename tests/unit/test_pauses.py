"""Pauses and availability windows through the client (SPEC §4): SQLite, in-memory transport
and locks, a fake clock. What "starts" is what the dispatcher hands to the transport."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from release_orchestrator import Client, InvalidRequest, NotFound, Settings
from release_orchestrator.domain import PauseScope, SkipReason
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import dispatch
from release_orchestrator.services.pauses import hold_reason_for_schedule, parse_until
from release_orchestrator.storage.repository import Repository
from release_orchestrator.testing import FakeClock, MemoryTransport

UTC = timezone.utc
#: Monday 2026-01-05 12:00 UTC (FakeClock's default start).
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

BLUEPRINT = """
project: shop
environments:
  - name: staging
  - name: prod
    settings: {parallel_releases: true, max_parallel_releases: 5}
resources:
  - {type: database, name: orders, executor: simulated, spec: {size: 1}}
  - {type: service, name: web, executor: simulated, spec: {image: "web:1"}}
  - {type: service, name: api, executor: simulated, spec: {image: "api:1"}}
"""


class Rig:
    """A client on a fresh database, its transport and its clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(START)
        self.transport = MemoryTransport()
        self.url = f"sqlite:///{tmp_path / 'relo.db'}"
        self.client = self.as_user("alice")
        self.client.apply_blueprint_text(BLUEPRINT)

    def as_user(self, user: str) -> Client:
        return Client(
            Settings(database_url=self.url, user=user),
            transport=self.transport,
            lock_store=MemoryLockStore(),
            clock=self.clock,
        )

    def started(self) -> list[int]:
        """Release ids handed to workers since the last call, in order."""
        return [s.release_id for s in self.transport.take()]

    def submit(self, env: str, *targets: str) -> int:
        kind = "selective" if targets else "full"
        return self.client.submit("shop", env, kind, targets=list(targets)).id

    def events(self, kind: str) -> list[Any]:
        return [e for e in self.client.events("shop", limit=200) if e.kind == kind]

    def reconcile(self) -> dict[str, int]:
        return dispatch.reconcile(self.client.ctx)


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    r = Rig(tmp_path)
    yield r
    r.client.ctx.db.dispose()


def held_codes(client: Client, release_id: int) -> list[str]:
    return [h.code for h in client.get(release_id).held]


# -- pauses -----------------------------------------------------------------------------


def test_project_pause_holds_every_environment_and_says_who_and_why(rig: Rig) -> None:
    pause = rig.client.pause("shop", reason="holiday freeze")
    assert pause.scope is PauseScope.PROJECT and pause.environment is None
    assert (pause.paused_by, pause.reason, pause.until) == ("alice", "holiday freeze", None)
    assert pause.paused_at == START
    staging = rig.submit("staging")
    prod = rig.submit("prod", "service/web")
    assert rig.started() == []
    for release_id, env in ((staging, "staging"), (prod, "prod")):
        release = rig.client.get(release_id)
        assert str(release.status) == "queued"
        assert held_codes(rig.client, release_id) == ["project_paused"]
        [active] = rig.client.active("shop", env)
        assert active.held[0].message.startswith(
            "project 'shop' is paused by alice since 2026-01-05 12:00:00 UTC: holiday freeze"
        )
    [event] = rig.events("paused")
    assert event.actor == "alice" and event.environment is None
    assert event.data["scope"] == "project" and event.data["reason"] == "holiday freeze"


def test_environment_pause_holds_it_and_not_its_sibling(rig: Rig) -> None:
    rig.client.pause("shop", "prod", reason="audit")
    prod = rig.submit("prod", "service/web")
    staging = rig.submit("staging")
    assert rig.started() == [staging]
    assert held_codes(rig.client, prod) == ["environment_paused"]
    message = rig.client.get(prod).held[0].message
    assert "environment 'shop/prod' is paused by alice" in message and "audit" in message


def test_project_pause_covers_environments_created_later(rig: Rig) -> None:
    rig.client.pause("shop")
    rig.client.apply_blueprint_text(
        BLUEPRINT.replace("  - name: staging\n", "  - name: staging\n  - name: qa\n")
    )
    qa = rig.submit("qa")
    assert rig.started() == []
    assert held_codes(rig.client, qa) == ["project_paused"]


def test_resume_starts_held_releases_at_once_in_fifo_order(rig: Rig) -> None:
    rig.client.pause("shop", "prod")
    ids = [rig.submit("prod", f"service/{name}") for name in ("web", "api")]
    ids.append(rig.submit("prod", "database/orders"))
    assert rig.started() == []
    bob = rig.as_user("bob")
    result = bob.resume("shop", "prod")
    assert result.resumed is not None and result.resumed.paused_by == "alice"
    assert result.started == ids and rig.started() == ids
    assert result.still_paused == []
    [event] = rig.events("resumed")
    assert event.actor == "bob" and event.data["pause"]["by"] == "alice"
    assert rig.client.show_environment("shop", "prod").environment_pause is None


def test_resume_of_the_project_starts_every_environment(rig: Rig) -> None:
    rig.client.pause("shop")
    staging = [rig.submit("staging"), rig.submit("staging")]
    prod = rig.submit("prod", "service/web")
    result = rig.client.resume("shop")
    # staging: only its head starts; the next one waits for it (both need the environment)
    assert sorted(result.started) == sorted([staging[0], prod])
    [hold] = rig.client.get(staging[1]).held
    assert (hold.code, hold.release_id) == ("state_lock_held", staging[0])


def test_environment_resume_under_a_project_pause_says_it_still_holds(rig: Rig) -> None:
    rig.client.pause("shop", reason="freeze")
    rig.client.pause("shop", "prod", reason="audit")
    release = rig.submit("prod", "service/web")
    result = rig.client.resume("shop", "prod")
    assert result.resumed is not None and result.started == []
    [still] = result.still_paused
    assert still.scope is PauseScope.PROJECT and still.reason == "freeze"
    assert held_codes(rig.client, release) == ["project_paused"]
    # and the other way round
    rig.client.pause("shop", "prod", reason="audit")
    result = rig.client.resume("shop")
    assert [p.environment for p in result.still_paused] == ["prod"]
    assert held_codes(rig.client, release) == ["environment_paused"]


def test_resume_when_not_paused_is_a_no_op(rig: Rig) -> None:
    result = rig.client.resume("shop", "staging")
    assert result.resumed is None and result.started == [] and result.still_paused == []
    assert rig.events("resumed") == []


def test_pausing_a_paused_scope_replaces_the_pause(rig: Rig) -> None:
    until = START + timedelta(hours=2)
    rig.client.pause("shop", "prod", reason="audit", until=until)
    rig.clock.advance(60)
    pause = rig.as_user("bob").pause("shop", "prod", reason="audit, day 2")
    assert (pause.paused_by, pause.reason, pause.until) == ("bob", "audit, day 2", None)
    assert pause.paused_at == START + timedelta(seconds=60)
    first, second = reversed(rig.events("paused"))
    assert second.data["replaced"]["by"] == "alice"
    assert second.data["replaced"]["until"] == until.isoformat()
    assert "pause updated by bob" in second.message and first.data["replaced"] is None


def test_until_resumes_by_itself_on_the_reconciler_tick(rig: Rig) -> None:
    pause = rig.client.pause("shop", "prod", until="2026-01-05T13:30:00+01:00")
    assert pause.until == START + timedelta(minutes=30)
    release = rig.submit("prod", "service/web")
    rig.clock.advance(29 * 60)
    rig.reconcile()
    assert rig.started() == [] and held_codes(rig.client, release) == ["environment_paused"]
    rig.clock.advance(60)
    stats = rig.reconcile()
    assert stats["started"] == 1 and rig.started() == [release]
    [event] = rig.events("resumed")
    assert event.actor == "relo" and event.data == {"scope": "environment", "expired": True}
    view = rig.client.show_environment("shop", "prod")
    assert view.environment_pause is None and view.can_start


def test_expired_project_pause_is_cleared_even_without_waiting_releases(rig: Rig) -> None:
    rig.client.pause("shop", until=START + timedelta(seconds=5))
    rig.clock.advance(6)
    rig.reconcile()
    [event] = rig.events("resumed")
    assert event.data["expired"] is True and event.environment is None
    assert all(e.project_pause is None for e in rig.client.environments("shop"))


@pytest.mark.parametrize(
    ("until", "fragment"),
    [
        ("2026-01-05T11:00:00Z", "is not in the future"),
        ("2026-01-05T12:00:00Z", "is not in the future"),
        ("2026-01-05T18:00:00", "has no timezone"),
        ("next tuesday", "is not an ISO 8601 time"),
        ("", "is not an ISO 8601 time"),
    ],
)
def test_bad_until_is_refused_and_changes_nothing(rig: Rig, until: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        rig.client.pause("shop", "prod", until=until)
    assert rig.client.show_environment("shop", "prod").environment_pause is None
    assert rig.events("paused") == []


def test_parse_until_accepts_z_and_offsets_and_returns_utc() -> None:
    assert parse_until("2026-01-05T12:00:01Z", START) == START + timedelta(seconds=1)
    assert parse_until("2026-01-05 14:00+01:00", START) == START + timedelta(hours=1)
    assert parse_until(START + timedelta(days=1), START) == START + timedelta(days=1)
    assert parse_until(None, START) is None
    with pytest.raises(InvalidRequest, match="no timezone"):
        parse_until(datetime(2030, 1, 1), START)


def test_unknown_names_are_refused(rig: Rig) -> None:
    with pytest.raises(NotFound, match=r"unknown project 'shopp'.*existing: shop"):
        rig.client.pause("shopp")
    with pytest.raises(NotFound, match=r"unknown environment 'prd'.*existing: prod"):
        rig.client.resume("shop", "prd")
    assert rig.events("paused") == []


def test_running_release_is_not_affected_by_a_pause(rig: Rig) -> None:
    running = rig.submit("staging")
    assert rig.started() == [running]
    rig.client.pause("shop", "staging")
    # the dispatched release keeps its place; nothing is recalled or failed
    assert str(rig.client.get(running).status) == "queued"
    assert rig.client.get(running).held == []
    waiting = rig.submit("staging")
    assert set(held_codes(rig.client, waiting)) >= {"environment_paused"}


# -- windows ----------------------------------------------------------------------------


def test_deny_window_covering_now_holds_until_it_is_removed(rig: Rig) -> None:
    window = rig.client.add_window("shop", "prod", kind="deny", cron="* * * * *", duration="1h")
    assert window.open_now and window.kind == "deny" and window.duration == "1h"
    release = rig.submit("prod", "service/web")
    assert rig.started() == []
    [hold] = rig.client.get(release).held
    assert hold.code == "outside_window" and f"deny window {window.id} is open" in hold.message
    removed = rig.client.remove_window("shop", "prod", window.id)
    assert removed.id == window.id
    assert rig.started() == [release]
    kinds = [e.kind for e in rig.client.events("shop", "prod")]
    assert "window_added" in kinds and "window_removed" in kinds


def test_allow_window_holds_until_it_opens(rig: Rig) -> None:
    # weekdays 09:00-17:00 Berlin; Monday 12:00 UTC is 13:00 Berlin: open now
    rig.client.add_window(
        "shop", "prod", kind="allow", cron="0 9 * * 1-5", duration="8h", timezone="Europe/Berlin"
    )
    view = rig.client.show_environment("shop", "prod")
    assert view.windows_open and view.open_until == datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
    rig.clock.set(datetime(2026, 1, 5, 20, 0, tzinfo=UTC))
    release = rig.submit("prod", "service/web")
    assert rig.started() == []
    view = rig.client.show_environment("shop", "prod")
    assert not view.windows_open and not view.can_start
    assert view.window_hold == "outside_allow_window"
    assert view.next_opening == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert [h.code for h in view.queue.next_holds] == ["outside_window"]
    assert "next opening 2026-01-06 08:00:00 UTC" in view.queue.next_holds[0].message
    rig.clock.set(datetime(2026, 1, 6, 8, 0, tzinfo=UTC))
    rig.reconcile()
    assert rig.started() == [release]


def test_a_pause_overrides_an_open_allow_window(rig: Rig) -> None:
    rig.client.add_window("shop", "prod", kind="allow", cron="* * * * *", duration="1h")
    rig.client.pause("shop", "prod", reason="incident")
    release = rig.submit("prod", "service/web")
    assert rig.started() == []
    assert held_codes(rig.client, release) == ["environment_paused"]
    view = rig.client.show_environment("shop", "prod")
    assert view.windows_open and not view.can_start


def test_window_list_and_show_report_each_window(rig: Rig) -> None:
    a = rig.client.add_window("shop", "prod", kind="deny", cron="0 22 * * *", duration="1h30m")
    b = rig.client.add_window(
        "shop", "prod", kind="allow", cron="@daily", duration="1d", timezone="America/New_York"
    )
    items = rig.client.windows("shop", "prod")
    assert [w.id for w in items] == [a.id, b.id]
    assert items[0].duration == "1h30m" and items[0].duration_s == 5400
    assert not items[0].open_now
    assert items[0].next_start == datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
    assert items[1].cron == "@daily" and items[1].open_now
    assert rig.client.windows("shop", "staging") == []
    view = rig.client.show_environment("shop", "prod")
    assert [w.id for w in view.windows] == [a.id, b.id]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "* * *"}, "expected 5 fields"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"duration": "0m"}, "duration must be positive"),
        ({"duration": "2 hours"}, "invalid duration '2 hours'"),
        ({"duration": timedelta(0)}, "must be positive"),
        ({"timezone": "Mars/Base"}, "unknown timezone 'Mars/Base'"),
        ({"kind": "maybe"}, "window kind must be allow or deny"),
    ],
)
def test_bad_window_is_refused_and_changes_nothing(
    rig: Rig, kwargs: dict[str, Any], fragment: str
) -> None:
    args: dict[str, Any] = {"kind": "deny", "cron": "* * * * *", "duration": "1h"}
    args.update(kwargs)
    with pytest.raises(InvalidRequest, match=fragment):
        rig.client.add_window("shop", "prod", **args)
    assert rig.client.windows("shop", "prod") == []
    assert rig.events("window_added") == []


def test_removing_an_unknown_window_names_the_existing_ones(rig: Rig) -> None:
    staging = rig.client.add_window("shop", "staging", kind="deny", cron="@daily", duration="1h")
    prod = rig.client.add_window("shop", "prod", kind="deny", cron="@daily", duration="1h")
    with pytest.raises(NotFound, match=rf"unknown window '{staging.id}'.*existing: {prod.id}$"):
        rig.client.remove_window("shop", "prod", staging.id)  # another environment's window
    assert [w.id for w in rig.client.windows("shop", "staging")] == [staging.id]


# -- the hook for scheduled releases (SPEC §7) --------------------------------------------


def test_hold_reason_for_schedule(rig: Rig) -> None:
    def reason() -> SkipReason | None:
        with rig.client.ctx.db.session(write=False) as s:
            repo = Repository(s)
            project, env = repo.environment("shop", "prod")
            return hold_reason_for_schedule(repo, project, env, rig.clock.now())

    assert reason() is None
    deny = rig.client.add_window("shop", "prod", kind="deny", cron="* * * * *", duration="1h")
    assert reason() is SkipReason.OUTSIDE_WINDOW
    rig.client.pause("shop", until=START + timedelta(minutes=5))
    assert reason() is SkipReason.PAUSED  # a pause wins over windows
    rig.client.remove_window("shop", "prod", deny.id)
    assert reason() is SkipReason.PAUSED
    rig.clock.advance(5 * 60)  # the pause expired (even before the reconciler clears it)
    assert reason() is None
    rig.client.pause("shop", "prod")
    assert reason() is SkipReason.PAUSED


def test_show_environment_summarizes_the_queue(rig: Rig) -> None:
    first = rig.submit("staging")
    second = rig.submit("staging")
    rig.client.settings("shop", "staging", approval=True)
    pending = rig.submit("staging")
    view = rig.client.show_environment("shop", "staging")
    assert view.queue.queued == [first, second] and view.queue.pending_approval == [pending]
    # the first one is handed to a worker; the second waits for it
    assert [(h.code, h.release_id) for h in view.queue.next_holds] == [("state_lock_held", first)]
    assert view.settings.approval_required and view.can_start
