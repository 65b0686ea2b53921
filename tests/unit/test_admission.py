"""The admission policy (SPEC §3, §4, §5): examples for every reason, and properties.

The property tests judge ``decide()`` against an independent statement of the rules: two
releases conflict when parallel is not in effect, or when either needs the whole environment,
or when their targets intersect; a foreign lock blocks what it covers.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release_orchestrator.domain.models import Finding
from release_orchestrator.policy.admission import (
    CONFLICT_CODES,
    ENVIRONMENT,
    Claim,
    Code,
    Decision,
    LockInfo,
    PauseState,
    Reason,
    Snapshot,
    WindowHold,
    conflicts,
    decide,
    overlap,
)
from release_orchestrator.policy.findings import finding_of

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=timezone.utc)
PAUSE = PauseState(by="alice", at=NOW - timedelta(hours=1), reason="freeze",
                   until=NOW + timedelta(hours=2))
WINDOW = WindowHold(reason="deny_window", next_opening=NOW + timedelta(hours=3), window_id=7)


def sel(release_id: int, *resources: str) -> Claim:
    return Claim(release_id, whole=False, resources=frozenset(resources))


def whole(release_id: int) -> Claim:
    return Claim(release_id, whole=True)


def snap(**kw: object) -> Snapshot:
    return Snapshot(now=NOW, **kw)  # type: ignore[arg-type]


def lock(scope: str, resource: str | None = None, release_id: int | None = None,
         owner: str = "worker-9") -> LockInfo:
    return LockInfo(scope=scope, resource=resource, owner=owner, release_id=release_id,
                    since=NOW - timedelta(minutes=5), ttl_left_ms=12_000)


def codes(d: Decision, release_id: int) -> list[Code]:
    return [r.code for r in d.reasons(release_id)]


def only(d: Decision, release_id: int) -> Reason:
    (reason,) = d.reasons(release_id)
    return reason


# --- examples: one per reason code ----------------------------------------------------------


def test_nothing_queued_nothing_starts() -> None:
    d = decide(snap())
    assert d.start == ()
    assert dict(d.held) == {}
    assert d.reasons(1) == ()


def test_a_free_environment_starts_the_head() -> None:
    assert decide(snap(queue=(whole(1),))).start == (1,)
    assert decide(snap(queue=(sel(1, "a"),))).start == (1,)


@pytest.mark.parametrize(
    ("field", "code"),
    [("project_pause", Code.PROJECT_PAUSED), ("environment_pause", Code.ENVIRONMENT_PAUSED)],
)
def test_paused(field: str, code: Code) -> None:
    d = decide(snap(queue=(sel(1, "a"), whole(2)), parallel_releases=True, **{field: PAUSE}))
    assert d.start == ()
    reason = d.reasons(1)[0]
    assert reason.code is code
    assert reason.release_id is None
    assert reason.resources == ()
    assert dict(reason.facts) == {"by": "alice", "at": PAUSE.at, "reason": "freeze",
                                  "until": PAUSE.until}
    assert codes(d, 1) == [code]
    # The second one waits for the pause and behind the first (FIFO keeps holding).
    assert codes(d, 2) == [code, Code.WAITING_BEHIND]


def test_both_pauses_and_a_window_are_all_reported_in_order() -> None:
    d = decide(snap(queue=(whole(1),), project_pause=PAUSE, environment_pause=PAUSE,
                    window_hold=WINDOW))
    assert codes(d, 1) == [Code.PROJECT_PAUSED, Code.ENVIRONMENT_PAUSED, Code.OUTSIDE_WINDOW]


def test_outside_window() -> None:
    d = decide(snap(queue=(sel(1, "a"),), window_hold=WINDOW))
    assert d.start == ()
    reason = only(d, 1)
    assert reason.code is Code.OUTSIDE_WINDOW
    assert reason.release_id is None
    assert dict(reason.facts) == {"reason": "deny_window", "next_opening": WINDOW.next_opening,
                                  "window_id": 7}


def test_pause_holds_even_an_idle_environment_but_running_ones_are_not_touched() -> None:
    d = decide(snap(queue=(sel(2, "b"),), running=(sel(1, "a"),), parallel_releases=True,
                    environment_pause=PAUSE))
    assert d.start == ()
    assert codes(d, 2) == [Code.ENVIRONMENT_PAUSED]
    assert 1 not in d.held


def test_state_lock_held_by_a_running_release_names_it_and_the_shared_resources() -> None:
    d = decide(snap(parallel_releases=True, running=(sel(1, "c", "a", "b"),),
                    queue=(sel(2, "b", "a", "z"), sel(3, "z2"))))
    assert d.start == (3,)
    reason = only(d, 2)
    assert reason.code is Code.STATE_LOCK_HELD
    assert reason.release_id == 1
    assert reason.resources == ("a", "b")
    assert dict(reason.facts) == {"holder": "release"}


def test_state_lock_held_whole_versus_selective_names_the_selective_targets() -> None:
    d = decide(snap(parallel_releases=True, running=(whole(1),), queue=(sel(2, "b", "a"),)))
    assert only(d, 2) == Reason(Code.STATE_LOCK_HELD, 1, ("a", "b"),
                                MappingProxyType({"holder": "release"}))
    d = decide(snap(parallel_releases=True, running=(sel(1, "b", "a"),), queue=(whole(2),)))
    assert only(d, 2).resources == ("a", "b")
    d = decide(snap(parallel_releases=True, running=(whole(1),), queue=(whole(2),)))
    assert only(d, 2).resources == (ENVIRONMENT,)


def test_state_lock_held_with_parallel_off_reports_the_overlap_not_parallel() -> None:
    d = decide(snap(running=(sel(1, "a"),), queue=(sel(2, "a"),)))
    assert codes(d, 2) == [Code.STATE_LOCK_HELD]
    assert only(d, 2).release_id == 1


def test_unknown_foreign_lock_on_the_environment_blocks_everything() -> None:
    lk = lock("environment", owner="manual")
    d = decide(snap(parallel_releases=True, queue=(sel(1, "b", "a"),), locks=(lk,)))
    assert d.start == ()
    reason = only(d, 1)
    assert reason.code is Code.STATE_LOCK_HELD
    assert reason.release_id is None
    assert reason.resources == ("a", "b")
    assert dict(reason.facts) == {"holder": "unknown", "owner": "manual", "since": lk.since,
                                  "ttl_left_ms": 12_000}
    d = decide(snap(queue=(whole(1),), locks=(lk,)))
    assert only(d, 1).resources == (ENVIRONMENT,)


def test_stale_lock_of_a_finished_release_names_that_release() -> None:
    d = decide(snap(parallel_releases=True, running=(sel(5, "x"),),
                    queue=(sel(1, "a"),), locks=(lock("resource", "a", release_id=4),)))
    reason = only(d, 1)
    assert (reason.code, reason.release_id, reason.resources) == (
        Code.STATE_LOCK_HELD, 4, ("a",))
    assert reason.facts["holder"] == "stale"


def test_foreign_slot_lock_blocks_only_whole_environment_claims() -> None:
    lk = lock("slot", release_id=4)
    d = decide(snap(parallel_releases=True, queue=(sel(1, "a"), whole(2)), locks=(lk,)))
    assert d.start == (1,)
    # 2 is blocked by the slot and by the selective release that just started.
    (slot,) = [r for r in d.reasons(2) if r.release_id == 4]
    assert (slot.code, slot.resources) == (Code.STATE_LOCK_HELD, (ENVIRONMENT,))
    assert decide(snap(queue=(whole(2),), locks=(lk,))).start == ()


def test_foreign_resource_lock_blocks_claims_needing_that_resource() -> None:
    lk = lock("resource", "b")
    d = decide(snap(parallel_releases=True, queue=(sel(1, "a"), sel(2, "b", "c")),
                    locks=(lk,)))
    assert d.start == (1,)
    assert only(d, 2).resources == ("b",)
    d = decide(snap(queue=(whole(3),), locks=(lk,)))
    assert only(d, 3).resources == ("b",)
    # A resource lock without a resource name covers nothing.
    assert decide(snap(queue=(whole(3),), locks=(lock("resource"),))).start == (3,)


def test_own_locks_of_running_releases_are_ignored() -> None:
    running = (sel(1, "a"),)
    own = (lock("slot", release_id=1), lock("resource", "a", release_id=1),
           lock("environment", release_id=1))
    d = decide(snap(parallel_releases=True, running=running, queue=(sel(2, "b"),),
                    locks=own))
    assert d.start == (2,)


def test_waiting_behind_an_earlier_conflicting_release_with_parallel_on() -> None:
    d = decide(snap(parallel_releases=True, running=(sel(9, "a"),),
                    queue=(sel(1, "a", "b"), sel(2, "c", "b"), sel(3, "c"), sel(4, "d"))))
    assert d.start == (4,)
    assert codes(d, 1) == [Code.STATE_LOCK_HELD]
    # 2 is free of running releases but must not overtake 1 on "b".
    assert only(d, 2) == Reason(Code.WAITING_BEHIND, 1, ("b",),
                                MappingProxyType({"position": 1}))
    assert only(d, 3) == Reason(Code.WAITING_BEHIND, 2, ("c",),
                                MappingProxyType({"position": 2}))


def test_waiting_behind_a_whole_environment_release() -> None:
    d = decide(snap(parallel_releases=True, running=(sel(9, "a"),),
                    queue=(whole(1), sel(2, "x", "y"), whole(3))))
    assert d.start == ()
    assert only(d, 2) == Reason(Code.WAITING_BEHIND, 1, ("x", "y"),
                                MappingProxyType({"position": 1}))
    # only the earliest release ahead is named (naming all would make reasons quadratic)
    assert [(r.release_id, r.resources) for r in d.reasons(3)
            if r.code is Code.WAITING_BEHIND] == [(1, (ENVIRONMENT,))]


def test_waiting_behind_with_parallel_off_is_on_the_whole_environment() -> None:
    d = decide(snap(running=(sel(9, "a"),), queue=(sel(1, "a"), sel(2, "q"))))
    assert d.start == ()
    waiting = [r for r in d.reasons(2) if r.code is Code.WAITING_BEHIND]
    assert waiting == [Reason(Code.WAITING_BEHIND, 1, (ENVIRONMENT,),
                              MappingProxyType({"position": 1}))]


def test_parallel_disabled() -> None:
    d = decide(snap(running=(sel(1, "a"),), queue=(sel(2, "b"),)))
    assert only(d, 2) == Reason(Code.PARALLEL_DISABLED, 1, (ENVIRONMENT,))
    # Parallel off and nothing running: the head starts, the next waits for it.
    d = decide(snap(queue=(sel(1, "a"), sel(2, "b"))))
    assert d.start == (1,)
    assert only(d, 2) == Reason(Code.PARALLEL_DISABLED, 1, (ENVIRONMENT,))


def test_approval_disables_parallel() -> None:
    d = decide(snap(parallel_releases=True, approval_required=True,
                    running=(sel(1, "a"),), queue=(sel(2, "b"),)))
    assert only(d, 2) == Reason(Code.APPROVAL_DISABLES_PARALLEL, 1, (ENVIRONMENT,))
    # With parallel off anyway, approval is not the reason.
    d = decide(snap(approval_required=True, running=(sel(1, "a"),), queue=(sel(2, "b"),)))
    assert codes(d, 2) == [Code.PARALLEL_DISABLED]


def test_max_parallel_reached() -> None:
    d = decide(snap(parallel_releases=True, max_parallel_releases=2,
                    running=(sel(1, "a"), sel(2, "b")), queue=(sel(3, "c"),)))
    assert d.start == ()
    reason = only(d, 3)
    assert (reason.code, reason.release_id, reason.resources) == (
        Code.MAX_PARALLEL_REACHED, None, ())
    assert dict(reason.facts) == {"running": 2, "max": 2}


def test_max_parallel_counts_releases_started_by_the_same_decision() -> None:
    d = decide(snap(parallel_releases=True, max_parallel_releases=2,
                    queue=(sel(1, "a"), sel(2, "b"), sel(3, "c"), sel(4, "c", "d"))))
    assert d.start == (1, 2)
    assert only(d, 3).facts == {"running": 2, "max": 2}
    # 4 waits for the cap and behind 3 (which it conflicts with).
    assert codes(d, 4) == [Code.WAITING_BEHIND, Code.MAX_PARALLEL_REACHED]


def test_max_parallel_is_not_a_reason_when_parallel_is_off() -> None:
    d = decide(snap(max_parallel_releases=1, running=(sel(1, "a"),), queue=(sel(2, "b"),)))
    assert codes(d, 2) == [Code.PARALLEL_DISABLED]


def test_approval_pending_holds_nothing() -> None:
    d = decide(snap(parallel_releases=True, queue=(sel(1, "a"),), pending_approval=(5, 6)))
    assert d.start == (1,)
    assert d.reasons(5) == (Reason(Code.APPROVAL_PENDING, 5),)
    assert d.reasons(6) == (Reason(Code.APPROVAL_PENDING, 6),)
    d = decide(snap(pending_approval=(5,), project_pause=PAUSE, window_hold=WINDOW))
    assert d.reasons(5) == (Reason(Code.APPROVAL_PENDING, 5),)


def test_every_code_is_exercised_by_the_examples() -> None:
    # Guard: adding a Code without an example above should fail here first.
    assert set(Code) == {
        Code.PROJECT_PAUSED, Code.ENVIRONMENT_PAUSED, Code.OUTSIDE_WINDOW,
        Code.WAITING_BEHIND, Code.STATE_LOCK_HELD, Code.APPROVAL_PENDING,
        Code.PARALLEL_DISABLED, Code.APPROVAL_DISABLES_PARALLEL, Code.MAX_PARALLEL_REACHED,
    }
    assert {str(c) for c in Code} == {c.value for c in Code}


def test_conflicts_filters_conflict_codes() -> None:
    reasons = [Reason(c) for c in Code]
    assert {r.code for r in conflicts(reasons)} == set(CONFLICT_CODES)
    expected = {Code.WAITING_BEHIND, Code.STATE_LOCK_HELD, Code.PARALLEL_DISABLED,
                Code.APPROVAL_DISABLES_PARALLEL, Code.MAX_PARALLEL_REACHED}
    assert expected == CONFLICT_CODES


def test_overlap() -> None:
    assert overlap(whole(1), whole(2)) == {ENVIRONMENT}
    assert overlap(whole(1), sel(2, "a", "b")) == {"a", "b"}
    assert overlap(sel(2, "a", "b"), whole(1)) == {"a", "b"}
    assert overlap(sel(1, "a", "b"), sel(2, "b", "c")) == {"b"}
    assert overlap(sel(1, "a"), sel(2, "b")) == frozenset()
    assert whole(1).needs() == {ENVIRONMENT}
    assert sel(1, "a").needs() == {"a"}


def test_effective_parallel() -> None:
    assert not snap().effective_parallel
    assert snap(parallel_releases=True).effective_parallel
    assert not snap(parallel_releases=True, approval_required=True).effective_parallel


# --- properties over random snapshots -------------------------------------------------------

RESOURCES = ("a", "b", "c", "d", "e")


def parallel_in_effect(s: Snapshot) -> bool:
    """Parallel on and approval off (SPEC §5), not read from the product's property."""
    return s.parallel_releases and not s.approval_required


def model_conflict(s: Snapshot, x: Claim, y: Claim) -> bool:
    """SPEC §5, stated independently of ``overlap``."""
    if not parallel_in_effect(s) or x.whole or y.whole:
        return True
    return not x.resources.isdisjoint(y.resources)


def resource_conflict(x: Claim, y: Claim) -> bool:
    """Conflicts whatever the settings: the same state could be written twice."""
    return x.whole or y.whole or not x.resources.isdisjoint(y.resources)


def lock_blocks(claim: Claim, lk: LockInfo) -> bool:
    if lk.scope == "environment":
        return True
    if lk.scope == "slot":
        return claim.whole
    return lk.resource is not None and (claim.whole or lk.resource in claim.resources)


def foreign_locks(s: Snapshot) -> list[LockInfo]:
    running = {c.release_id for c in s.running}
    return [lk for lk in s.locks if lk.release_id not in running]


def globally_held(s: Snapshot) -> bool:
    return any((s.project_pause, s.environment_pause, s.window_hold))


def reference_start(s: Snapshot) -> tuple[int, ...]:
    """Which queued releases start, by the rules of SPEC §3-§5 (not by the product's code)."""
    if globally_held(s):
        return ()
    occupied = list(s.running)
    held: list[Claim] = []
    start: list[int] = []
    for claim in s.queue:
        blocked = (
            any(model_conflict(s, claim, o) for o in occupied)
            or any(model_conflict(s, claim, e) for e in held)
            or any(lock_blocks(claim, lk) for lk in foreign_locks(s))
            or (parallel_in_effect(s) and len(occupied) >= s.max_parallel_releases)
        )
        if blocked:
            held.append(claim)
        else:
            start.append(claim.release_id)
            occupied.append(claim)
    return tuple(start)


@st.composite
def claims(draw: st.DrawFn, release_id: int) -> Claim:
    if draw(st.integers(0, 3)) == 0:
        return whole(release_id)
    resources = draw(st.frozensets(st.sampled_from(RESOURCES), min_size=1, max_size=3))
    return Claim(release_id, whole=False, resources=resources)


@st.composite
def snapshots(draw: st.DrawFn, *, calm: bool | None = None) -> Snapshot:
    """Random snapshots; ``calm=True`` means no pause or window, ``False`` at least one."""
    n_running = draw(st.integers(0, 3))
    n_queue = draw(st.integers(0, 7))
    n_pending = draw(st.integers(0, 2))
    ids = draw(st.lists(st.integers(1, 60), unique=True,
                        min_size=n_running + n_queue + n_pending,
                        max_size=n_running + n_queue + n_pending))
    running = tuple(draw(claims(i)) for i in ids[:n_running])
    queue = tuple(draw(claims(i)) for i in ids[n_running:n_running + n_queue])
    pending = tuple(ids[n_running + n_queue:])
    owners = st.one_of(st.none(), st.integers(100, 103),
                       st.sampled_from([c.release_id for c in running]) if running
                       else st.none())
    locks = draw(st.lists(
        st.builds(
            LockInfo,
            scope=st.sampled_from(["environment", "slot", "resource", "resource"]),
            resource=st.one_of(st.none(), st.sampled_from(RESOURCES)),
            owner=st.sampled_from(["w1", "w2"]),
            release_id=owners,
            since=st.none() | st.just(NOW),
            ttl_left_ms=st.none() | st.integers(-1, 30_000),
        ),
        max_size=draw(st.sampled_from([0, 0, 1, 3])),
    ))
    held: list[bool]
    if calm:
        held = [False, False, False]
    elif calm is False:
        held = draw(st.lists(st.booleans(), min_size=3, max_size=3).filter(any))
    else:
        held = [draw(st.integers(0, 4)) == 0 for _ in range(3)]
    window = draw(st.sampled_from([WINDOW, WindowHold("outside_allow_window")]))
    project_pause, environment_pause, window_hold = (
        PAUSE if held[0] else None, PAUSE if held[1] else None, window if held[2] else None)
    return Snapshot(
        now=NOW,
        parallel_releases=draw(st.booleans() | st.just(True)),
        max_parallel_releases=draw(st.integers(1, 4)),
        approval_required=draw(st.sampled_from([False, False, True])),
        project_pause=project_pause,
        environment_pause=environment_pause,
        window_hold=window_hold,
        running=running,
        queue=queue,
        pending_approval=pending,
        locks=tuple(locks),
    )


PROPS = settings(max_examples=250, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def occupied_before(s: Snapshot, d: Decision, index: int) -> list[Claim]:
    """Running releases plus those this decision starts ahead of queue position ``index``."""
    started = set(d.start)
    return [*s.running, *(c for c in s.queue[:index] if c.release_id in started)]


@PROPS
@given(snapshots())
def test_a_every_queued_release_starts_or_has_a_reason_never_both(s: Snapshot) -> None:
    d = decide(s)
    queued = [c.release_id for c in s.queue]
    assert len(set(d.start)) == len(d.start)
    assert set(d.start) <= set(queued)
    # Starts keep the queue's order.
    assert list(d.start) == [i for i in queued if i in set(d.start)]
    for release_id in queued:
        started = release_id in d.start
        assert started != bool(d.reasons(release_id)), (release_id, d)
    assert set(d.held) == (set(queued) - set(d.start)) | set(s.pending_approval)
    for reasons in d.held.values():
        assert reasons  # never an empty entry


@PROPS
@given(snapshots())
def test_b_started_releases_conflict_with_nothing(s: Snapshot) -> None:
    d = decide(s)
    started = [c for c in s.queue if c.release_id in d.start]
    for i, claim in enumerate(started):
        for other in [*s.running, *started[:i]]:
            assert not model_conflict(s, claim, other), (claim, other)
            assert not overlap(claim, other)
        for lk in foreign_locks(s):
            assert not lock_blocks(claim, lk), (claim, lk)


@PROPS
@given(snapshots())
def test_c_the_cap(s: Snapshot) -> None:
    d = decide(s)
    if not d.start:
        return
    if parallel_in_effect(s):
        assert len(s.running) + len(d.start) <= s.max_parallel_releases
    else:
        # One release at a time: something starts only in an empty environment, and alone.
        assert s.running == ()
        assert len(d.start) == 1


@PROPS
@given(snapshots())
def test_d_fifo_no_release_overtakes_an_earlier_conflicting_one(s: Snapshot) -> None:
    d = decide(s)
    for i, claim in enumerate(s.queue):
        if claim.release_id not in d.start:
            continue
        for earlier in s.queue[:i]:
            if earlier.release_id not in d.start:
                assert not model_conflict(s, claim, earlier), (earlier, claim)


@PROPS
@given(snapshots(calm=False))
def test_e_paused_or_outside_window_nothing_starts(s: Snapshot) -> None:
    d = decide(s)
    assert d.start == ()
    expected = [code for code, on in ((Code.PROJECT_PAUSED, s.project_pause),
                                      (Code.ENVIRONMENT_PAUSED, s.environment_pause),
                                      (Code.OUTSIDE_WINDOW, s.window_hold)) if on]
    for claim in s.queue:
        # The global reasons come first, in this order, whatever else holds the release.
        assert codes(d, claim.release_id)[: len(expected)] == expected


@PROPS
@given(snapshots())
def test_f_pending_approval_gets_exactly_approval_pending(s: Snapshot) -> None:
    d = decide(s)
    for release_id in s.pending_approval:
        assert d.reasons(release_id) == (Reason(Code.APPROVAL_PENDING, release_id),)
        assert release_id not in d.start
    # Pending releases hold nothing: dropping them changes nothing for the queue.
    without = decide(Snapshot(**{**vars(s), "pending_approval": ()}))
    assert without.start == d.start
    assert {k: v for k, v in d.held.items() if k not in s.pending_approval} == dict(without.held)


def reason_key(r: Reason) -> tuple[object, ...]:
    return (r.code, r.release_id, r.resources, tuple(sorted(r.facts.items())))


def is_foreign_lock_reason(r: Reason) -> bool:
    return r.code is Code.STATE_LOCK_HELD and r.facts.get("holder") != "release"


@PROPS
@given(snapshots(), st.randoms(use_true_random=False))
def test_g_decide_is_deterministic_and_ignores_lock_order(
    s: Snapshot, rnd: random.Random
) -> None:
    d = decide(s)
    assert decide(s) == d
    locks = list(s.locks)
    rnd.shuffle(locks)
    shuffled = decide(Snapshot(**{**vars(s), "locks": tuple(locks)}))
    assert shuffled.start == d.start
    assert set(shuffled.held) == set(d.held)
    for rid, reasons in d.held.items():
        other = shuffled.reasons(rid)
        # The same reasons; lock reasons follow the lock list's order (the lock stores hand
        # it over sorted), everything else keeps its place.
        assert Counter(map(reason_key, other)) == Counter(map(reason_key, reasons))
        assert [r for r in other if not is_foreign_lock_reason(r)] == [
            r for r in reasons if not is_foreign_lock_reason(r)
        ]


@PROPS
@given(snapshots())
def test_start_matches_the_rules_exactly(s: Snapshot) -> None:
    """Sound and complete: what starts is exactly what the SPEC rules allow (liveness)."""
    assert decide(s).start == reference_start(s)


@PROPS
@given(snapshots())
def test_every_reason_is_true_and_every_obstacle_is_reported(s: Snapshot) -> None:
    d = decide(s)
    foreign = foreign_locks(s)
    queue_ids = [c.release_id for c in s.queue]
    held_before: list[tuple[int, Claim]] = []
    for index, claim in enumerate(s.queue):
        rid = claim.release_id
        if rid in d.start:
            continue
        occupied = occupied_before(s, d, index)
        by_id = {c.release_id: c for c in occupied}
        reasons = d.reasons(rid)
        for r in reasons:
            if r.code is Code.PROJECT_PAUSED:
                assert s.project_pause is not None
            elif r.code is Code.ENVIRONMENT_PAUSED:
                assert s.environment_pause is not None
            elif r.code is Code.OUTSIDE_WINDOW:
                assert s.window_hold is not None
            elif r.code is Code.STATE_LOCK_HELD and r.facts["holder"] == "release":
                other = by_id[r.release_id]  # type: ignore[index]
                assert resource_conflict(claim, other)
                assert r.resources == tuple(sorted(overlap(claim, other)))
            elif r.code is Code.STATE_LOCK_HELD:
                assert r.release_id not in by_id
                assert any(lk.release_id == r.release_id and lock_blocks(claim, lk)
                           for lk in foreign)
                assert r.facts["holder"] == ("unknown" if r.release_id is None else "stale")
            elif r.code is Code.WAITING_BEHIND:
                pos = queue_ids.index(r.release_id)  # type: ignore[arg-type]
                assert pos < index
                assert r.release_id not in d.start
                assert model_conflict(s, claim, s.queue[pos])
                assert r.facts["position"] == pos + 1
            elif r.code in (Code.PARALLEL_DISABLED, Code.APPROVAL_DISABLES_PARALLEL):
                assert not parallel_in_effect(s)
                assert r.release_id in by_id
                assert (r.code is Code.APPROVAL_DISABLES_PARALLEL) == (
                    s.approval_required and s.parallel_releases)
            elif r.code is Code.MAX_PARALLEL_REACHED:
                assert parallel_in_effect(s)
                assert r.facts["running"] == len(occupied) >= s.max_parallel_releases
                assert r.facts["max"] == s.max_parallel_releases
            else:  # pragma: no cover
                pytest.fail(f"unexpected reason {r}")
        # Completeness: every obstacle shows up, naming its release.
        named = {(r.code, r.release_id) for r in reasons}
        for other in occupied:
            if not model_conflict(s, claim, other):
                continue
            assert any(oid == other.release_id and code in CONFLICT_CODES
                       for code, oid in named), (claim, other, reasons)
        conflicting_before = [e for _pos, e in held_before if model_conflict(s, claim, e)]
        if conflicting_before:  # the earliest conflicting release ahead is the one named
            assert (Code.WAITING_BEHIND, conflicting_before[0].release_id) in named
        assert sum(1 for r in reasons if r.code is Code.WAITING_BEHIND) == (
            1 if conflicting_before else 0)
        for lk in foreign:
            if lock_blocks(claim, lk):
                assert (Code.STATE_LOCK_HELD, lk.release_id) in named
        if parallel_in_effect(s) and len(occupied) >= s.max_parallel_releases:
            assert (Code.MAX_PARALLEL_REACHED, None) in named
        held_before.append((index, claim))


@PROPS
@given(snapshots(calm=True))
def test_only_the_queue_prefix_the_dispatcher_reads_can_start(s: Snapshot) -> None:
    """Nothing past a whole-environment release, past the head with parallel off, or at the
    cap starts; so the dispatcher may read only that prefix of a long queue."""
    d = decide(s)
    if not parallel_in_effect(s):
        prefix = s.queue[:1]
    elif len(s.running) >= s.max_parallel_releases:
        prefix = ()
    else:
        cut = next((i + 1 for i, c in enumerate(s.queue) if c.whole), len(s.queue))
        prefix = s.queue[:cut]
    assert set(d.start) <= {c.release_id for c in prefix}
    assert decide(Snapshot(**{**vars(s), "queue": prefix})).start == d.start


# --- findings: they say exactly the policy's reasons ----------------------------------------


def all_reasons(d: Decision) -> list[tuple[int, Reason]]:
    return [(rid, r) for rid, reasons in d.held.items() for r in reasons]


@PROPS
@given(snapshots())
def test_h_findings_equal_the_refusal_reasons(s: Snapshot) -> None:
    d = decide(s)
    for rid, reason in all_reasons(d):
        f = finding_of(reason, "shop", "prod", rid)
        assert f.code == reason.code
        assert f.message.strip()
        assert f.remedy and f.remedy.strip()
        assert f.remedy.startswith(("relo ", "wait for it"))
        if reason.code in (Code.WAITING_BEHIND, Code.STATE_LOCK_HELD):
            assert f.release_id == reason.release_id
            assert f.resources == list(reason.resources)
        if reason.release_id is not None:
            assert str(reason.release_id) in f.message
        if reason.code in (Code.PARALLEL_DISABLED, Code.APPROVAL_DISABLES_PARALLEL,
                           Code.MAX_PARALLEL_REACHED, Code.OUTSIDE_WINDOW):
            assert "-p shop -e prod" in f.remedy
    # One finding per reason, in the same order: the findings are the reasons.
    for rid, reasons in d.held.items():
        found = [finding_of(r, "shop", "prod", rid) for r in reasons]
        assert [f.code for f in found] == [str(r.code) for r in reasons]


def finding(reason: Reason, release_id: int | None = 2) -> Finding:
    return finding_of(reason, "shop", "prod", release_id)


def test_finding_texts() -> None:
    d = decide(snap(parallel_releases=True, running=(sel(1, "a"),),
                    queue=(sel(2, "a"), sel(3, "a", "b"), whole(4)),
                    locks=(lock("resource", "b", release_id=8),
                           lock("environment", owner="ops-laptop"))))
    by_code = {(rid, r.code, r.release_id): r for rid, r in all_reasons(d)}
    running = finding(by_code[(2, Code.STATE_LOCK_HELD, 1)])
    assert running.message == "state lock on a held by running release 1"
    assert running.remedy == "wait for it: relo release logs 1 --follow"
    behind = finding(by_code[(3, Code.WAITING_BEHIND, 2)], 3)
    assert behind.message == ("release 3 is waiting behind release 2 (queue position 1) "
                              "on a")
    assert behind.remedy == "wait for it, or remove it: relo release delete 2"
    stale = finding(by_code[(3, Code.STATE_LOCK_HELD, 8)], 3)
    assert stale.message == ("state lock on b held by finished release 8 since "
                             "2025-03-04 11:55:00 UTC, TTL left 12s")
    assert stale.remedy == "relo lock break -p shop -e prod b --reason 'stale lock'"
    unknown = finding(by_code[(4, Code.STATE_LOCK_HELD, None)], 4)
    assert "an unknown holder (ops-laptop)" in unknown.message
    assert "the whole environment" in unknown.message
    assert unknown.remedy == "relo lock break -p shop -e prod --all --reason 'stale lock'"


def test_finding_texts_for_pauses_windows_settings_and_approval() -> None:
    d = decide(snap(project_pause=PAUSE, queue=(whole(1),)))
    f = finding(d.reasons(1)[0], 1)
    assert f.message == ("project 'shop' is paused by alice since 2025-03-04 11:00:00 UTC: "
                         "freeze (until 2025-03-04 14:00:00 UTC)")
    assert f.remedy == "relo env resume -p shop"
    d = decide(snap(environment_pause=PauseState("bob", NOW), queue=(whole(1),)))
    f = finding(d.reasons(1)[0], 1)
    assert f.message == "environment 'shop/prod' is paused by bob since 2025-03-04 12:00:00 UTC"
    assert f.remedy == "relo env resume -p shop -e prod"
    f = finding(Reason(Code.OUTSIDE_WINDOW, facts=MappingProxyType(
        {"reason": "deny_window", "next_opening": WINDOW.next_opening, "window_id": 7})))
    assert f.message == "deny window 7 is open; next opening 2025-03-04 15:00:00 UTC"
    f = finding(Reason(Code.OUTSIDE_WINDOW, facts=MappingProxyType(
        {"reason": "outside_allow_window", "next_opening": None, "window_id": None})))
    assert f.message == "outside the availability windows; no opening within a year"
    f = finding(Reason(Code.APPROVAL_PENDING, 5), 5)
    assert (f.message, f.remedy) == ("release 5 waits for approval", "relo release approve 5")
    f = finding(Reason(Code.PARALLEL_DISABLED, 1, (ENVIRONMENT,)))
    assert f.remedy == "relo env settings -p shop -e prod --parallel on"
    assert "release 1 is running" in f.message
    f = finding(Reason(Code.APPROVAL_DISABLES_PARALLEL, 1, (ENVIRONMENT,)))
    assert f.remedy == "relo env settings -p shop -e prod --approval off"
    f = finding(Reason(Code.MAX_PARALLEL_REACHED,
                       facts=MappingProxyType({"running": 3, "max": 3})))
    assert f.message == "max parallel releases reached (3 of 3 running)"
    assert f.remedy == "relo env settings -p shop -e prod --max-parallel 4"


def test_findings_cover_every_code() -> None:
    samples: Sequence[Reason] = [
        Reason(Code.PROJECT_PAUSED, facts=MappingProxyType({"by": "a", "at": NOW})),
        Reason(Code.ENVIRONMENT_PAUSED, facts=MappingProxyType({"by": "a", "at": NOW})),
        Reason(Code.OUTSIDE_WINDOW, facts=MappingProxyType({"reason": "outside_allow_window"})),
        Reason(Code.WAITING_BEHIND, 1, ("a",), MappingProxyType({"position": 1})),
        Reason(Code.STATE_LOCK_HELD, 1, ("a",), MappingProxyType({"holder": "release"})),
        Reason(Code.APPROVAL_PENDING, 1),
        Reason(Code.PARALLEL_DISABLED, 1, (ENVIRONMENT,)),
        Reason(Code.APPROVAL_DISABLES_PARALLEL, 1, (ENVIRONMENT,)),
        Reason(Code.MAX_PARALLEL_REACHED, facts=MappingProxyType({"running": 1, "max": 1})),
    ]
    assert {r.code for r in samples} == set(Code)
    for r in samples:
        f = finding(r)
        assert f.code == r.code and f.message and f.remedy
        # The fallback (message == code) is never used for a known code.
        assert f.message != str(r.code)


@PROPS
@given(snapshots(), st.data())
def test_serial_reasons_of_a_release_need_only_the_head_of_the_queue(
    s: Snapshot, data: st.DataObject
) -> None:
    """With parallel off, once what may start has started (as ``submit`` sees it after the
    dispatcher's decision in the same transaction), a queued release's reasons from (head of
    the queue, it) are its reasons over the whole queue: ``submit`` renders them without
    reading the queue (services.snapshot, ``also``)."""
    s = Snapshot(**{**vars(s), "parallel_releases": False})
    started = set(decide(s).start)
    s = Snapshot(
        **{
            **vars(s),
            "running": s.running + tuple(c for c in s.queue if c.release_id in started),
            "queue": tuple(c for c in s.queue if c.release_id not in started),
        }
    )
    if not s.queue:
        return
    claim = data.draw(st.sampled_from(s.queue))
    partial = (s.queue[0],) if claim == s.queue[0] else (s.queue[0], claim)
    cut = decide(Snapshot(**{**vars(s), "queue": partial}))
    assert cut.start == () == decide(s).start
    assert cut.reasons(claim.release_id) == decide(s).reasons(claim.release_id)
