"""``relo diagnose`` (SPEC §8): pure findings against the admission policy (properties), and
the service over SQLite with in-memory transport and locks (one scenario per code).

The real-process versions of every scenario, remedies included, are in
``tests/integration/test_diagnose.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release_orchestrator import Client, InvalidRequest, NotFound, Settings
from release_orchestrator.locks import LockRequest, MemoryLockStore
from release_orchestrator.policy.admission import (
    ENVIRONMENT,
    Claim,
    Code,
    LockInfo,
    PauseState,
    Snapshot,
    WindowHold,
    decide,
)
from release_orchestrator.policy.findings import (
    Fact,
    findings_for,
    parallel_hints,
    stale_locks,
    summarize,
)
from release_orchestrator.services import diagnose as service
from release_orchestrator.storage.repository import Repository
from release_orchestrator.storage.tables import ReleaseRow
from release_orchestrator.testing import FakeClock, MemoryTransport

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
RESOURCES = ("a", "b", "c", "d")
PAUSE = PauseState(by="alice", at=NOW - timedelta(hours=1), reason="audit")


# -- pure: findings equal the policy's reasons -----------------------------------------------
@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    n_running, n_queue, n_pending = (
        draw(st.integers(0, 3)),
        draw(st.integers(0, 7)),
        draw(st.integers(0, 2)),
    )
    ids = draw(
        st.lists(
            st.integers(1, 80),
            unique=True,
            min_size=n_running + n_queue + n_pending,
            max_size=n_running + n_queue + n_pending,
        )
    )

    def claim(release_id: int) -> Claim:
        if draw(st.integers(0, 3)) == 0:
            return Claim(release_id, whole=True)
        chosen = draw(st.frozensets(st.sampled_from(RESOURCES), min_size=1, max_size=3))
        return Claim(release_id, whole=False, resources=chosen)

    running = tuple(claim(i) for i in ids[:n_running])
    queue = tuple(claim(i) for i in ids[n_running : n_running + n_queue])
    pending = tuple(ids[n_running + n_queue :])
    holders = [None, 90, 91, *(c.release_id for c in running)]
    locks = draw(
        st.lists(
            st.builds(
                LockInfo,
                scope=st.sampled_from(["environment", "slot", "resource"]),
                resource=st.none() | st.sampled_from(RESOURCES),
                owner=st.sampled_from(["w1:x", "manual"]),
                release_id=st.sampled_from(holders),
                since=st.none() | st.just(NOW - timedelta(minutes=3)),
                ttl_left_ms=st.none() | st.integers(-1, 60_000),
            ),
            max_size=3,
        )
    )
    return Snapshot(
        now=NOW,
        parallel_releases=draw(st.booleans()),
        max_parallel_releases=draw(st.integers(1, 4)),
        approval_required=draw(st.booleans()),
        project_pause=draw(st.none() | st.just(PAUSE)),
        environment_pause=draw(st.none() | st.just(PAUSE)),
        window_hold=draw(
            st.none()
            | st.just(WindowHold("deny_window", NOW + timedelta(hours=1), 3))
            | st.just(WindowHold("outside_allow_window"))
        ),
        running=running,
        queue=queue,
        pending_approval=pending,
        locks=tuple(locks),
    )


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_findings_of_a_release_are_exactly_the_policys_reasons(snap: Snapshot) -> None:
    decision = decide(snap)
    for claim in (*snap.queue, *(Claim(i, whole=True) for i in snap.pending_approval)):
        rid = claim.release_id
        found = findings_for(decision, rid, "shop", "prod")
        reasons = decision.reasons(rid)
        assert [(f.code, f.release_id, tuple(f.resources)) for f in found] == [
            (str(r.code), r.release_id, r.resources) for r in reasons
        ]
        # a release the policy starts gets no finding; a held one gets at least one
        assert (rid in decision.start) == (not found)
        for f in found:
            assert f.message and f.remedy
            assert f.remedy.startswith(("relo ", "wait for it"))
            # every sentence names the waiting release, or (approval) is about it
            assert str(rid) in f.message


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_summary_only_states_reasons_the_policy_gave(snap: Snapshot) -> None:
    decision = decide(snap)
    given_reasons = {
        (str(r.code), r.release_id, r.resources) for rs in decision.held.values() for r in rs
    }
    summary = summarize(decision, "shop", "prod")
    keys = {(f.code, f.release_id, tuple(f.resources)) for f in summary}
    assert keys <= given_reasons
    # every held release's every code is in the summary (waiting_behind: its first blocker)
    codes = {f.code for f in summary}
    for reasons in decision.held.values():
        assert {str(r.code) for r in reasons} <= codes
        behind = [r for r in reasons if r.code is Code.WAITING_BEHIND]
        if behind:
            assert (str(Code.WAITING_BEHIND), behind[0].release_id, behind[0].resources) in keys
    # no finding twice
    assert len(summary) == len({(f.code, f.release_id, tuple(f.resources), f.message)
                                for f in summary})


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_stale_locks_are_the_locks_no_running_release_owns(snap: Snapshot) -> None:
    running = {c.release_id for c in snap.running}
    stale = stale_locks(snap)
    assert len(stale) == sum(1 for lk in snap.locks if lk.release_id not in running)
    for reason in stale:
        assert reason.code is Code.STATE_LOCK_HELD
        assert reason.release_id not in running
        assert reason.facts["holder"] == ("unknown" if reason.release_id is None else "stale")


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_parallel_hints_only_when_parallel_is_not_in_effect(snap: Snapshot) -> None:
    hints = parallel_hints(snap, decide(snap), "shop", "prod")
    if snap.effective_parallel:
        assert hints == []
    for held, f in hints:
        assert f.code in (Code.PARALLEL_DISABLED, Code.APPROVAL_DISABLES_PARALLEL)
        assert f.remedy and f.remedy.startswith("relo env settings -p shop -e prod --")
        if held is None:
            assert f.code == Code.APPROVAL_DISABLES_PARALLEL
            assert snap.approval_required and snap.parallel_releases


def test_summary_groups_a_long_queue() -> None:
    snap = Snapshot(
        now=NOW,
        environment_pause=PAUSE,
        running=(Claim(1, whole=True),),
        queue=tuple(Claim(i, whole=True) for i in range(2, 30)),
    )
    summary = summarize(decide(snap), "shop", "prod")
    assert [f.code for f in summary] == [
        "environment_paused",
        "state_lock_held",
        "waiting_behind",
    ]
    paused, lock, behind = summary
    assert paused.message.startswith("releases 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, … (28 in all) wait")
    assert paused.remedy == "relo env resume -p shop -e prod"
    assert (lock.release_id, lock.resources) == (1, [ENVIRONMENT])
    assert "held by running release 1" in lock.message
    assert behind.release_id == 2 and behind.message.startswith("releases 3, 4,")
    assert "are waiting behind release 2 (queue position 1)" in behind.message
    assert behind.remedy == "wait for it, or remove it: relo release delete 2"


# -- the service over SQLite with in-memory adapters --------------------------------------
BLUEPRINT = """
project: shop
environments:
  - name: staging
  - name: prod
    settings: {parallel_releases: true, max_parallel_releases: 2}
resources:
  - {type: database, name: orders, executor: simulated, spec: {size: 1}}
  - {type: service, name: web, executor: simulated, spec: {image: "web:1"},
     depends_on: [database/orders]}
  - {type: service, name: api, executor: simulated, spec: {image: "api:1"}}
"""


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(NOW)
        self.transport = MemoryTransport(workers={"w1@host": ["release.shop.staging",
                                                              "release.shop.prod"]})
        self.locks = MemoryLockStore()
        self.client = Client(
            Settings(database_url=f"sqlite:///{tmp_path / 'relo.db'}", user="alice"),
            transport=self.transport,
            lock_store=self.locks,
            clock=self.clock,
        )
        self.client.apply_blueprint_text(BLUEPRINT)

    def submit(self, env: str, *targets: str, **kw: Any) -> int:
        kind = "selective" if targets else kw.pop("type", "full")
        return self.client.submit("shop", env, kind, targets=targets, **kw).id

    def diagnose(self, env: str = "staging", release_id: int | None = None,
                 apps: str = "") -> list[Any]:
        return self.client.diagnose("shop", env, release_id, apps=apps)

    def codes(self, *args: Any, **kw: Any) -> list[str]:
        return [f.code for f in self.diagnose(*args, **kw)]

    def run(self, release_id: int) -> None:
        """Run a dispatched release in-process, as a worker would."""
        from release_orchestrator.services import engine

        self.transport.take()
        engine.execute(self.client.ctx, release_id, "w1@host")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_idle_environment_has_no_finding(rig: Rig) -> None:
    assert rig.diagnose() == []


def test_waiting_behind_and_state_lock_held(rig: Rig) -> None:
    first = rig.submit("staging")
    second = rig.submit("staging")
    third = rig.submit("staging", "service/api")
    found = rig.diagnose(release_id=third)
    assert [(f.code, f.release_id) for f in found] == [
        ("state_lock_held", first), ("waiting_behind", second)]
    assert found[1].message == (f"release {third} is waiting behind release {second} "
                                "(queue position 1) on the whole environment")
    assert found[1].remedy == f"wait for it, or remove it: relo release delete {second}"
    # first is dispatched: the worker has not taken it yet
    (taken,) = rig.diagnose(release_id=first)
    assert taken.code == "waiting_for_worker" and "w1@host" in taken.message


def test_parallel_disabled_between_disjoint_selective_releases(rig: Rig) -> None:
    running = rig.submit("staging", "service/web")
    queued = rig.submit("staging", "service/api")
    behind = rig.submit("staging", "database/orders")
    found = rig.diagnose(release_id=queued)
    assert [(f.code, f.release_id) for f in found] == [("parallel_disabled", running)]
    assert found[0].remedy == "relo env settings -p shop -e staging --parallel on"
    hints = [f for f in rig.diagnose(release_id=behind) if f.code == "parallel_disabled"]
    # against the running one (policy) and against the queued one (hint)
    assert {f.release_id for f in hints} == {running, queued}
    rig.client.settings("shop", "staging", parallel=True)
    assert "parallel_disabled" not in rig.codes()


def test_approval_pending_and_approval_disables_parallel(rig: Rig) -> None:
    rig.client.settings("shop", "prod", approval=True)
    assert rig.codes("prod") == ["approval_disables_parallel"]
    pending = rig.submit("prod", "service/web")
    (f,) = [f for f in rig.diagnose("prod", pending)]
    assert (f.code, f.release_id, f.remedy) == (
        "approval_pending", pending, f"relo release approve {pending}")
    rig.client.approve(pending)
    other = rig.submit("prod", "service/api")
    rig.client.approve(other)
    found = rig.diagnose("prod", other)
    assert [(f.code, f.release_id) for f in found] == [("approval_disables_parallel", pending)]
    assert found[0].remedy == "relo env settings -p shop -e prod --approval off"
    rig.client.settings("shop", "prod", approval=False)
    assert rig.diagnose("prod", other)[0].code == "waiting_for_worker"


def test_max_parallel_reached(rig: Rig) -> None:
    a = rig.submit("prod", "service/web")
    b = rig.submit("prod", "service/api")
    c = rig.submit("prod", "database/orders")
    (f,) = rig.diagnose("prod", c)
    assert f.code == "max_parallel_reached" and "(2 of 2 running)" in f.message
    assert f.remedy == "relo env settings -p shop -e prod --max-parallel 3"
    assert [m.release_id for m in rig.transport.sent] == [a, b]  # the two that run


def test_pauses_and_window(rig: Rig) -> None:
    rig.client.pause("shop", reason="audit")
    rig.client.pause("shop", "staging", reason="db migration")
    rid = rig.submit("staging")
    found = rig.diagnose(release_id=rid)
    assert [f.code for f in found][:2] == ["project_paused", "environment_paused"]
    assert "paused by alice" in found[0].message and "audit" in found[0].message
    assert [f.remedy for f in found[:2]] == [
        "relo env resume -p shop", "relo env resume -p shop -e staging"]
    # environment-wide: stated once, naming the release it holds
    env_wide = rig.diagnose()
    assert [f.code for f in env_wide][:2] == ["project_paused", "environment_paused"]
    assert env_wide[0].message.startswith(f"release {rid} waits: project 'shop' is paused")
    rig.client.resume("shop")
    rig.client.resume("shop", "staging")
    rig.client.add_window("shop", "staging", kind="deny", cron="* * * * *", duration="1h")
    other = rig.submit("staging", "service/api")
    assert "outside_window" in rig.codes(release_id=other)


def test_unknown_lock_holder_even_with_nothing_queued(rig: Rig) -> None:
    rig.locks.acquire(LockRequest(env_key="shop/staging", owner="manual-lock", exclusive=True,
                                  ttl_ms=600_000))
    (f,) = rig.diagnose()
    assert (f.code, f.release_id, f.resources) == ("state_lock_held", None, [ENVIRONMENT])
    assert "unknown holder (manual-lock)" in f.message
    assert f.remedy == "relo lock break -p shop -e staging --all --reason 'stale lock'"
    rid = rig.submit("staging")
    found = rig.diagnose()
    assert [x.code for x in found] == ["state_lock_held"]  # not twice
    assert found[0].message.startswith(f"release {rid} waits: state lock")


def test_no_worker_and_unreachable_workers(rig: Rig) -> None:
    rig.transport.workers = {"w2@host": ["release.shop.prod"]}
    (f,) = rig.diagnose()
    assert f.code == "no_worker"
    assert "no worker consumes release.shop.staging" in f.message
    assert f.remedy.startswith("start one: relo worker --environments shop/staging")
    rid = rig.submit("staging")
    (f,) = rig.diagnose(release_id=rid)
    assert (f.code, f.release_id) == ("no_worker", rid)
    rig.transport.consumers = lambda queue, timeout=1.0: None  # type: ignore[method-assign]
    assert rig.codes(release_id=rid) == ["workers_unreachable"]


def test_in_sync_for_apps_and_for_a_full_release(rig: Rig) -> None:
    full = rig.submit("staging")
    rig.run(full)
    found = rig.diagnose(apps="web,api")
    assert [f.code for f in found] == ["in_sync"]
    assert found[0].resources == ["service/web", "service/api"]
    assert found[0].remedy == (
        "release them anyway: relo release sync service/web,service/api -p shop -e staging "
        "--force")
    again = rig.submit("staging")
    assert "in_sync" in rig.codes(release_id=again)
    rig.run(again)
    (f,) = [f for f in rig.diagnose(release_id=again) if f.code == "in_sync"]
    assert f.message == f"release {again} ran no step: every resource was already in sync"
    assert f.remedy == "relo release trigger -p shop -e staging --type full --force"
    forced = rig.submit("staging", force=True)
    rig.run(forced)
    assert "in_sync" not in rig.codes(release_id=forced)


def test_out_of_sync_app_with_nothing_targeting_it(rig: Rig) -> None:
    rig.run(rig.submit("staging"))
    rig.client.set_resource("shop", "staging", "web", ["image=web:2"])
    (f,) = rig.diagnose(apps="web")
    assert (f.code, f.resources) == ("out_of_sync", ["service/web"])
    assert f.remedy == "relo release sync service/web -p shop -e staging"


def test_unknown_names(rig: Rig) -> None:
    with pytest.raises(NotFound) as err:
        rig.client.diagnose("shpo", "staging")
    assert "existing: shop" in err.value.message
    finding = service.unknown_name(err.value)
    assert finding.code == "unknown_name" and finding.remedy == "use an existing project: shop"
    with pytest.raises(NotFound) as err:
        rig.client.diagnose("shop", "stagign")
    assert "staging" in err.value.message
    with pytest.raises(NotFound) as err:
        rig.client.diagnose("shop", "staging", apps="paymnts")
    assert "service/web" in err.value.message
    assert service.unknown_name(err.value).resources == ["paymnts"]
    with pytest.raises(NotFound) as err:
        rig.client.diagnose("shop", "staging", 999)
    assert service.unknown_name(err.value, "shop", "staging").remedy == (
        "list them: relo release list -p shop -e staging")
    rid = rig.submit("prod")
    with pytest.raises(InvalidRequest, match="belongs to shop/prod"):
        rig.client.diagnose("shop", "staging", rid)


def test_resource_unknown_and_rollback_failed(rig: Rig) -> None:
    rig.run(rig.submit("staging"))
    rid = rig.submit("staging", "service/web")
    with rig.client.ctx.db.session() as s:
        repo = Repository(s)
        prow, env = repo.environment("shop", "staging")
        state = repo.state(env, repo.resolve_resource(prow, "web"))
        state.unknown = True
        state.last_release_id = rid
        s.get(ReleaseRow, rid).status = "failed"  # type: ignore[union-attr]
    (f,) = rig.diagnose()
    assert (f.code, f.release_id, f.resources) == ("resource_unknown", rid, ["service/web"])
    assert f.remedy == (
        "relo release trigger -p shop -e staging --type selective --target service/web:refresh")
    with rig.client.ctx.db.session() as s:
        s.get(ReleaseRow, rid).status = "rollback_failed"  # type: ignore[union-attr]
    assert rig.codes() == ["rollback_failed"]
    assert rig.codes(release_id=rid) == ["release_finished", "rollback_failed"]


def test_schedule_skipped_busy_until_a_release_succeeds(rig: Rig) -> None:
    with rig.client.ctx.db.session() as s:
        repo = Repository(s)
        _, env = repo.environment("shop", "staging")
        for minutes in (1, 2):
            repo.add_release(ReleaseRow(
                environment_id=env.id, type="full", status="skipped", skip_reason="busy",
                triggered_by="schedule", trigger="schedule", targets=[], extra_args=[],
                extra_vars={}, created_at=NOW + timedelta(minutes=minutes),
                finished_at=NOW + timedelta(minutes=minutes), dispatch_count=0))
    (f,) = rig.diagnose()
    assert f.code == "schedule_skipped_busy"
    assert "skipped 2 releases because shop/staging was busy" in f.message
    assert f.remedy.endswith("relo release trigger -p shop -e staging --type full")
    assert rig.codes(release_id=f.release_id) == ["schedule_skipped_busy"]
    rig.clock.advance(600)
    rig.run(rig.submit("staging"))
    assert rig.diagnose() == []


def test_running_release_says_which_step(rig: Rig) -> None:
    rid = rig.submit("staging")
    with rig.client.ctx.db.session() as s:
        row = s.get(ReleaseRow, rid)
        assert row is not None
        row.status, row.started_at, row.worker = "running", NOW, "w1@host"
    (f,) = rig.diagnose(release_id=rid)
    assert f.code == str(Fact.RELEASE_RUNNING)
    assert f.message.startswith(f"release {rid} is running on w1@host since")
    assert f.remedy == f"follow it: relo release logs {rid} --follow"
