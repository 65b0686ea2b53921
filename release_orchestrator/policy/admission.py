"""The admission policy: may a queued release start now, and if not, why.

Pure code: a frozen :class:`Snapshot` of one environment goes in, a frozen :class:`Decision`
comes out. The dispatcher applies the decision; ``relo diagnose``, ``release active`` and
``release wait`` render its reasons. Because both read the same value they cannot disagree.

Rules (SPEC §3, §4, §5):

- while the project or the environment is paused, or the environment is outside its
  availability windows, nothing starts;
- queues are FIFO per environment: a queued release starts only when it conflicts with no
  running release, no foreign lock, and no release queued before it (a waiting release names
  the earliest release ahead of it that it waits behind);
- non-selective types need the whole environment; selective releases need their targets;
- with parallel off (or approval on, which disables parallel) any two releases conflict;
- at most ``max_parallel_releases`` run at once;
- releases waiting for approval hold nothing and are never in the queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from ..domain.enums import StrEnum


class Code(StrEnum):
    """Stable reason codes; ``relo diagnose`` uses the same strings."""

    PROJECT_PAUSED = "project_paused"
    ENVIRONMENT_PAUSED = "environment_paused"
    OUTSIDE_WINDOW = "outside_window"
    WAITING_BEHIND = "waiting_behind"
    STATE_LOCK_HELD = "state_lock_held"
    APPROVAL_PENDING = "approval_pending"
    PARALLEL_DISABLED = "parallel_disabled"
    APPROVAL_DISABLES_PARALLEL = "approval_disables_parallel"
    MAX_PARALLEL_REACHED = "max_parallel_reached"


#: Codes that mean "another release or lock is in the way" (``--fail-on-conflict``).
CONFLICT_CODES = frozenset(
    {
        Code.WAITING_BEHIND,
        Code.STATE_LOCK_HELD,
        Code.PARALLEL_DISABLED,
        Code.APPROVAL_DISABLES_PARALLEL,
        Code.MAX_PARALLEL_REACHED,
    }
)

#: What a whole-environment claim or lock is called in reasons.
ENVIRONMENT = "environment"


@dataclass(frozen=True)
class Claim:
    """What a release needs: the whole environment, or a set of resources."""

    release_id: int
    whole: bool
    resources: frozenset[str] = frozenset()

    def needs(self) -> frozenset[str]:
        """The resources named in a reason: the targets, or ``environment``."""
        return frozenset({ENVIRONMENT}) if self.whole else self.resources


@dataclass(frozen=True)
class PauseState:
    """A pause in force (who, when, why, until when)."""

    by: str
    at: datetime
    reason: str | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class WindowHold:
    """The environment is outside its availability windows."""

    reason: str  # "deny_window" | "outside_allow_window"
    next_opening: datetime | None = None
    window_id: int | None = None


@dataclass(frozen=True)
class LockInfo:
    """A live Redis state lock of the environment."""

    scope: str  # "environment" (exclusive) | "slot" (shared) | "resource"
    resource: str | None
    owner: str
    release_id: int | None
    since: datetime | None = None
    ttl_left_ms: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything the policy needs about one environment, at ``now``."""

    now: datetime
    parallel_releases: bool = False
    max_parallel_releases: int = 10
    approval_required: bool = False
    project_pause: PauseState | None = None
    environment_pause: PauseState | None = None
    window_hold: WindowHold | None = None
    #: Releases running or dispatched to a worker (they hold or are taking their locks).
    running: tuple[Claim, ...] = ()
    #: Queued releases not yet dispatched, in FIFO order.
    queue: tuple[Claim, ...] = ()
    pending_approval: tuple[int, ...] = ()
    locks: tuple[LockInfo, ...] = ()

    @property
    def effective_parallel(self) -> bool:
        return self.parallel_releases and not self.approval_required


@dataclass(frozen=True)
class Reason:
    """One reason a release may not start now."""

    code: Code
    #: The blocking release (running, queued before, or lock holder), when there is one.
    release_id: int | None = None
    #: The resources in conflict (``environment`` for the whole environment).
    resources: tuple[str, ...] = ()
    #: Code-specific facts: pause, window, lock or cap details.
    facts: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Decision:
    """The policy's answer: which queued releases start now, and why the others wait."""

    start: tuple[int, ...]
    held: Mapping[int, tuple[Reason, ...]]

    def reasons(self, release_id: int) -> tuple[Reason, ...]:
        return self.held.get(release_id, ())


def overlap(a: Claim, b: Claim) -> frozenset[str]:
    """What two claims both need; empty when they can run together under parallel."""
    if a.whole and b.whole:
        return frozenset({ENVIRONMENT})
    if a.whole:
        return b.needs()
    if b.whole:
        return a.needs()
    return a.resources & b.resources


def _lock_overlap(claim: Claim, lock: LockInfo) -> frozenset[str]:
    if lock.scope == "environment":
        return claim.needs()
    if lock.scope == "slot":
        return frozenset({ENVIRONMENT}) if claim.whole else frozenset()
    if lock.resource is None:
        return frozenset()
    if claim.whole or lock.resource in claim.resources:
        return frozenset({lock.resource})
    return frozenset()


def _global_reasons(snap: Snapshot) -> list[Reason]:
    out: list[Reason] = []
    for code, pause in (
        (Code.PROJECT_PAUSED, snap.project_pause),
        (Code.ENVIRONMENT_PAUSED, snap.environment_pause),
    ):
        if pause is not None:
            out.append(
                Reason(
                    code,
                    facts=MappingProxyType(
                        {
                            "by": pause.by,
                            "at": pause.at,
                            "reason": pause.reason,
                            "until": pause.until,
                        }
                    ),
                )
            )
    if snap.window_hold is not None:
        out.append(
            Reason(
                Code.OUTSIDE_WINDOW,
                facts=MappingProxyType(
                    {
                        "reason": snap.window_hold.reason,
                        "next_opening": snap.window_hold.next_opening,
                        "window_id": snap.window_hold.window_id,
                    }
                ),
            )
        )
    return out


def _conflict_with_running(snap: Snapshot, claim: Claim, other: Claim) -> Reason | None:
    shared = overlap(claim, other)
    if shared:
        return Reason(
            Code.STATE_LOCK_HELD,
            other.release_id,
            tuple(sorted(shared)),
            MappingProxyType({"holder": "release"}),
        )
    if snap.effective_parallel:
        return None
    code = (
        Code.APPROVAL_DISABLES_PARALLEL
        if snap.approval_required and snap.parallel_releases
        else Code.PARALLEL_DISABLED
    )
    return Reason(code, other.release_id, (ENVIRONMENT,))


def _first_ahead(
    snap: Snapshot,
    claim: Claim,
    first_any: tuple[int, Claim] | None,
    first_whole: tuple[int, Claim] | None,
    first_by_resource: dict[str, tuple[int, Claim]],
) -> tuple[int, Claim] | None:
    """The earliest held release queued before ``claim`` that conflicts with it, if any."""
    if not snap.effective_parallel or claim.whole:
        return first_any  # everything conflicts with a whole-environment claim / parallel off
    candidates = [first_whole, *(first_by_resource.get(r) for r in claim.resources)]
    found = [c for c in candidates if c is not None]
    return min(found, key=lambda c: c[0]) if found else None


def decide(snap: Snapshot) -> Decision:
    """Which queued releases may start now, and for each other one every reason it waits."""
    global_reasons = _global_reasons(snap)
    running_ids = {c.release_id for c in snap.running}
    foreign = [lk for lk in snap.locks if lk.release_id not in running_ids]
    occupied: list[Claim] = list(snap.running)
    # The first held release in the queue, overall / whole-environment / per resource: a
    # queued release names only the earliest release it waits behind (naming all of them
    # would make the reasons of a long queue quadratic), found in O(targets) per release.
    first_any: tuple[int, Claim] | None = None
    first_whole: tuple[int, Claim] | None = None
    first_by_resource: dict[str, tuple[int, Claim]] = {}
    start: list[int] = []
    held: dict[int, tuple[Reason, ...]] = {}
    for position, claim in enumerate(snap.queue, start=1):
        reasons = list(global_reasons)
        for other in occupied:
            reason = _conflict_with_running(snap, claim, other)
            if reason is not None:
                reasons.append(reason)
        ahead = _first_ahead(snap, claim, first_any, first_whole, first_by_resource)
        if ahead is not None:
            other_pos, other = ahead
            shared = overlap(claim, other) if snap.effective_parallel else frozenset(
                {ENVIRONMENT}
            )
            reasons.append(
                Reason(Code.WAITING_BEHIND, other.release_id, tuple(sorted(shared)),
                       MappingProxyType({"position": other_pos}))
            )
        for lock in foreign:
            shared = _lock_overlap(claim, lock)
            if shared:
                reasons.append(
                    Reason(Code.STATE_LOCK_HELD, lock.release_id, tuple(sorted(shared)),
                           MappingProxyType({"holder": "unknown" if lock.release_id is None
                                             else "stale", "owner": lock.owner,
                                             "since": lock.since,
                                             "ttl_left_ms": lock.ttl_left_ms}))
                )
        if snap.effective_parallel and len(occupied) >= snap.max_parallel_releases:
            reasons.append(
                Reason(Code.MAX_PARALLEL_REACHED,
                       facts=MappingProxyType({"running": len(occupied),
                                               "max": snap.max_parallel_releases}))
            )
        if reasons:
            held[claim.release_id] = tuple(reasons)
            entry = (position, claim)
            first_any = first_any or entry
            if claim.whole:
                first_whole = first_whole or entry
            for resource in claim.resources:
                first_by_resource.setdefault(resource, entry)
        else:
            start.append(claim.release_id)
            occupied.append(claim)
    for release_id in snap.pending_approval:
        held[release_id] = (Reason(Code.APPROVAL_PENDING, release_id),)
    return Decision(start=tuple(start), held=MappingProxyType(held))


def conflicts(reasons: Iterable[Reason]) -> list[Reason]:
    """The reasons that are conflicts with other releases or locks."""
    return [r for r in reasons if r.code in CONFLICT_CODES]
