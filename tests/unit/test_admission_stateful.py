"""The admission policy over time: random histories of one environment (SPEC §3-§5).

A model environment receives submissions (selective on a few resources, or whole-environment
types), approvals, deletions, finishes, setting changes, pauses, windows and stray state locks.
After every step it does what the dispatcher does: ``decide()`` on the current snapshot and move
the started releases to running. Across all histories:

- no two conflicting releases ever run together: two running releases never share a resource
  or the whole environment, and a release starts next to others only when the settings in
  force at that moment allow it (parallel on, approval off);
- the running count never exceeds the cap in force when the last of them started;
- no release is ever overtaken by a later one it conflicts with;
- nothing deadlocks: an idle, unpaused, unlocked environment always starts its head;
- liveness: once pauses and stray locks are gone and running releases keep finishing, every
  queued (and, once approved, every pending) release starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from release_orchestrator.policy.admission import (
    Claim,
    Code,
    Decision,
    LockInfo,
    PauseState,
    Snapshot,
    WindowHold,
    decide,
)

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
RESOURCES = ("a", "b", "c", "d", "e")
PAUSE = PauseState(by="ops", at=T0, reason="incident")
WINDOW = WindowHold(reason="outside_allow_window", next_opening=T0 + timedelta(days=1))


@dataclass(frozen=True)
class Started:
    """What was in force when a release started."""

    order: int  # global start order
    parallel: bool  # effective parallel
    cap: int  # how many may run at once (1 with parallel off)


def conflict(parallel: bool, x: Claim, y: Claim) -> bool:
    """SPEC §5: anything conflicts without parallel; otherwise whole or shared resources."""
    return not parallel or x.whole or y.whole or not x.resources.isdisjoint(y.resources)


def shares_state(x: Claim, y: Claim) -> bool:
    """Conflict under any settings: both would write the same state."""
    return conflict(True, x, y)


def own_locks(claim: Claim) -> list[LockInfo]:
    """The locks a running release holds itself (the policy must ignore them)."""
    if claim.whole:
        return [LockInfo("environment", None, f"w{claim.release_id}", claim.release_id)]
    return [LockInfo("slot", None, f"w{claim.release_id}", claim.release_id)] + [
        LockInfo("resource", r, f"w{claim.release_id}", claim.release_id)
        for r in sorted(claim.resources)
    ]


def blocks(lk: LockInfo, claim: Claim) -> bool:
    if lk.scope == "environment":
        return True
    if lk.scope == "slot":
        return claim.whole
    return lk.resource is not None and (claim.whole or lk.resource in claim.resources)


selective = st.frozensets(st.sampled_from(RESOURCES), min_size=1, max_size=2)


class Environment(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.next_id = 1
        self.clock = 0
        self.parallel = False
        self.max_parallel = 10
        self.approval = False
        self.project_paused = False
        self.env_paused = False
        self.outside_window = False
        self.pending: list[Claim] = []
        self.queue: list[Claim] = []  # FIFO
        self.running: dict[int, Claim] = {}
        self.foreign: list[LockInfo] = []  # locks of finished releases or unknown holders
        self.started: dict[int, Started] = {}
        self.entered: dict[int, int] = {}  # release -> when it entered the queue
        self.starts = 0

    # --- the environment as the policy sees it ----------------------------------------------

    @property
    def effective_parallel(self) -> bool:
        return self.parallel and not self.approval

    def snapshot(self) -> Snapshot:
        self.clock += 1
        return Snapshot(
            now=T0 + timedelta(seconds=self.clock),
            parallel_releases=self.parallel,
            max_parallel_releases=self.max_parallel,
            approval_required=self.approval,
            project_pause=PAUSE if self.project_paused else None,
            environment_pause=PAUSE if self.env_paused else None,
            window_hold=WINDOW if self.outside_window else None,
            running=tuple(self.running.values()),
            queue=tuple(self.queue),
            pending_approval=tuple(c.release_id for c in self.pending),
            locks=(*(lk for c in self.running.values() for lk in own_locks(c)), *self.foreign),
        )

    def dispatch(self) -> Decision:
        """What the dispatcher does after every event; checks each start as it happens."""
        snap = self.snapshot()
        d = decide(snap)
        parallel = self.effective_parallel
        cap = self.max_parallel if parallel else 1
        holds = {code for code, on in ((Code.PROJECT_PAUSED, self.project_paused),
                                       (Code.ENVIRONMENT_PAUSED, self.env_paused),
                                       (Code.OUTSIDE_WINDOW, self.outside_window)) if on}
        held_globally = bool(holds)
        queued_ids = [c.release_id for c in self.queue]
        assert set(d.start) <= set(queued_ids)
        if held_globally:
            assert d.start == ()
        for rid in queued_ids:
            got = {r.code for r in d.reasons(rid)}
            global_codes = got & {Code.PROJECT_PAUSED, Code.ENVIRONMENT_PAUSED,
                                  Code.OUTSIDE_WINDOW}
            assert global_codes == holds
        for c in self.pending:
            assert [r.code for r in d.reasons(c.release_id)] == [Code.APPROVAL_PENDING]
        # Deadlock freedom: an idle environment with nothing in the way starts its head.
        if self.queue and not self.running and not self.foreign and not held_globally:
            assert d.start[:1] == (self.queue[0].release_id,), d
        start = set(d.start)
        for rid in queued_ids:
            assert (rid in start) != bool(d.reasons(rid))
        for claim in list(self.queue):
            if claim.release_id not in start:
                continue
            for other in self.running.values():
                assert not conflict(parallel, claim, other), (claim, other)
            for lk in self.foreign:
                assert not blocks(lk, claim), (claim, lk)
            # No overtaking: everything that entered the queue before it and still waits
            # must not conflict with it.
            for earlier in self.queue:
                if earlier.release_id in start or earlier is claim:
                    continue
                if self.entered[earlier.release_id] < self.entered[claim.release_id]:
                    assert not conflict(parallel, claim, earlier), (earlier, claim)
            self.queue.remove(claim)
            self.running[claim.release_id] = claim
            self.starts += 1
            self.started[claim.release_id] = Started(self.starts, parallel, cap)
            assert len(self.running) <= cap
        return d

    # --- events -----------------------------------------------------------------------------

    @initialize(parallel=st.sampled_from([True, True, True, False]), max_parallel=st.integers(1, 4),
                approval=st.sampled_from([False, False, False, True]))
    def configure(self, parallel: bool, max_parallel: int, approval: bool) -> None:
        """Start mostly with parallel on, where the interesting interleavings are."""
        self.parallel, self.max_parallel, self.approval = parallel, max_parallel, approval

    def _submit(self, claim: Claim, dispatch: bool = True) -> None:
        self.next_id += 1
        if self.approval:
            self.pending.append(claim)
        else:
            self._enqueue(claim)
        if dispatch:
            self.dispatch()

    def _enqueue(self, claim: Claim) -> None:
        self.clock += 1
        self.entered[claim.release_id] = self.clock
        self.queue.append(claim)

    @rule(resources=st.frozensets(st.sampled_from(RESOURCES[:2]), min_size=1, max_size=1))
    def submit_selective_hot(self, resources: frozenset[str]) -> None:
        """Many releases on the same couple of resources: contention."""
        self._submit(Claim(self.next_id, whole=False, resources=resources))

    @rule(batch=st.lists(st.one_of(selective, selective, selective, st.none()), min_size=2,
                         max_size=5))
    def submit_burst(self, batch: list[frozenset[str] | None]) -> None:
        """Several submissions land before the dispatcher runs (``None``: whole env)."""
        for resources in batch:
            self._submit(Claim(self.next_id, whole=resources is None,
                               resources=resources or frozenset()), dispatch=False)
        self.dispatch()

    @rule(kind=st.sampled_from(["whole", "selective", "selective", "selective"]),
          resources=selective)
    def submit(self, kind: str, resources: frozenset[str]) -> None:
        """A launch/full/custom/destroy release (whole environment), or a selective one."""
        if kind == "whole":
            self._submit(Claim(self.next_id, whole=True))
        else:
            self._submit(Claim(self.next_id, whole=False, resources=resources))

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.pending))
        self.pending.remove(claim)
        self._enqueue(claim)
        self.dispatch()

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        self.pending.remove(data.draw(st.sampled_from(self.pending)))
        self.dispatch()

    @precondition(lambda self: self.running)
    @rule(data=st.data(), crash=st.sampled_from([False] * 7 + [True]))
    def finish(self, data: st.DataObject, crash: bool) -> None:
        rid = data.draw(st.sampled_from(sorted(self.running)))
        claim = self.running.pop(rid)
        if crash:
            # The worker died: its locks outlive the release until their TTL or a break.
            self.foreign.extend(own_locks(claim))
        self.dispatch()

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def finish_cleanly(self, data: st.DataObject) -> None:
        self.finish(data, crash=False)

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        self.queue.remove(data.draw(st.sampled_from(self.queue)))
        self.dispatch()

    @rule(scope=st.sampled_from(["environment", "slot", "resource"]),
          resource=st.sampled_from(RESOURCES))
    def stray_lock(self, scope: str, resource: str) -> None:
        """A lock held by nothing relo knows (a manual lock, an expired worker)."""
        self.foreign.append(LockInfo(scope, resource if scope == "resource" else None,
                                     "someone", None))
        self.dispatch()

    @precondition(lambda self: self.foreign)
    @rule(data=st.data())
    def break_lock(self, data: st.DataObject) -> None:
        if data.draw(st.sampled_from([True, True, False])):
            self.foreign.clear()  # relo lock break --all
        else:
            self.foreign.remove(data.draw(st.sampled_from(self.foreign)))
        self.dispatch()

    @rule(
        setting=st.sampled_from(["parallel", "max_parallel", "approval"]),
        parallel=st.sampled_from([True, True, False]),
        max_parallel=st.integers(1, 4),
        approval=st.sampled_from([True, False, False]),
    )
    def change_settings(self, setting: str, parallel: bool, max_parallel: int,
                        approval: bool) -> None:
        """``relo env settings --parallel on|off | --max-parallel N | --approval on|off``."""
        if setting == "parallel":
            self.parallel = parallel
        elif setting == "max_parallel":
            self.max_parallel = max_parallel
        else:
            self.approval = approval
        self.dispatch()

    @rule(hold=st.sampled_from(["project", "environment", "window"]),
          on=st.sampled_from([True, False, False]))
    def pause_or_window(self, hold: str, on: bool) -> None:
        """``relo env pause/resume`` (project or environment), or a window closing/opening."""
        if hold == "project":
            self.project_paused = on
        elif hold == "environment":
            self.env_paused = on
        else:
            self.outside_window = on
        self.dispatch()

    @rule()
    def tick(self) -> None:
        """A reconciler pass with nothing changed starts nothing: every event already
        dispatched, and starting releases only adds obstacles for the others."""
        assert self.dispatch().start == ()

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def no_two_running_releases_share_state(self) -> None:
        running = list(self.running.values())
        for i, x in enumerate(running):
            for y in running[i + 1:]:
                assert not shares_state(x, y), (x, y)

    @invariant()
    def each_release_started_only_beside_compatible_ones(self) -> None:
        """Settings may change while releases run; each start was legal when it happened."""
        by_order = sorted(self.running.values(), key=lambda c: self.started[c.release_id].order)
        for i, later in enumerate(by_order):
            at = self.started[later.release_id]
            for earlier in by_order[:i]:
                assert not conflict(at.parallel, later, earlier), (earlier, later, at)

    @invariant()
    def the_cap_in_force_at_the_last_start_holds(self) -> None:
        if self.running:
            last = max(self.running, key=lambda rid: self.started[rid].order)
            assert len(self.running) <= self.started[last].cap

    @invariant()
    def every_release_is_in_exactly_one_place(self) -> None:
        ids = [c.release_id for c in self.pending] + [c.release_id for c in self.queue] + list(
            self.running)
        assert len(ids) == len(set(ids))

    # --- liveness ---------------------------------------------------------------------------

    def teardown(self) -> None:
        """Drain: lift pauses and windows, approve, break stray locks, keep finishing."""
        self.project_paused = self.env_paused = self.outside_window = False
        self.foreign.clear()
        for claim in list(self.pending):
            self.pending.remove(claim)
            self._enqueue(claim)
        self.dispatch()
        waiting = {c.release_id for c in self.queue}
        rounds = 0
        while self.queue:
            rounds += 1
            assert rounds <= len(waiting) + 1, f"queue never drains: {self.queue}"
            self.running.clear()  # every running release finishes
            d = self.dispatch()
            assert d.start, "an idle environment started nothing"
        assert waiting <= set(self.started)


#: About 150 x 50 = 7,500 steps (each a decide() with its checks) plus the drains; no time
#: limits, since a slow shared machine is not a failure.
Environment.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEnvironment = Environment.TestCase
