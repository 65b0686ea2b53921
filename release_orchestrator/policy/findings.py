"""Plain sentences and remedy commands for the admission policy's reasons. Pure code.

``release active``, ``release show``, ``release wait`` and ``relo diagnose`` all render
reasons through :func:`finding_of`, so they say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType

from ..domain.enums import StrEnum
from ..domain.models import Finding
from ..domain.names import queue_name
from .admission import ENVIRONMENT, Code, Decision, Reason, Snapshot


def _when(value: object) -> str:
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is not None and offset.total_seconds() == 0:
            return value.strftime("%Y-%m-%d %H:%M:%S UTC")
        return value.isoformat()
    return str(value)


def _what(resources: tuple[str, ...]) -> str:
    if not resources or resources == (ENVIRONMENT,):
        return "the whole environment"
    return ", ".join(resources)


def finding_of(
    reason: Reason, project: str, environment: str, release_id: int | None = None
) -> Finding:
    """The finding (code, message, remedy) for one reason a release waits."""
    pe = f"-p {project} -e {environment}"
    f = reason.facts
    code = reason.code
    subject = f"release {release_id}" if release_id is not None else "the next release"
    if code in (Code.PROJECT_PAUSED, Code.ENVIRONMENT_PAUSED):
        level = "project" if code is Code.PROJECT_PAUSED else "environment"
        name = project if code is Code.PROJECT_PAUSED else f"{project}/{environment}"
        msg = f"{level} '{name}' is paused by {f.get('by')} since {_when(f.get('at'))}"
        if f.get("reason"):
            msg += f": {f.get('reason')}"
        if f.get("until"):
            msg += f" (until {_when(f.get('until'))})"
        remedy = f"relo env resume -p {project}" + (
            "" if code is Code.PROJECT_PAUSED else f" -e {environment}"
        )
        return Finding(code=str(code), message=msg, remedy=remedy, release_id=release_id)
    if code is Code.OUTSIDE_WINDOW:
        if f.get("reason") == "deny_window":
            msg = f"deny window {f.get('window_id')} is open"
        else:
            msg = "outside the availability windows"
        nxt = f.get("next_opening")
        msg += f"; next opening {_when(nxt)}" if nxt else "; no opening within a year"
        return Finding(
            code=str(code),
            message=msg,
            remedy=f"relo env window list {pe}  (remove one: relo env window remove {pe} ID)",
            release_id=release_id,
        )
    if code is Code.WAITING_BEHIND:
        msg = (
            f"{subject} is waiting behind release {reason.release_id} "
            f"(queue position {f.get('position')}) on {_what(reason.resources)}"
        )
        return Finding(
            code=str(code),
            message=msg,
            remedy=f"wait for it, or remove it: relo release delete {reason.release_id}",
            release_id=reason.release_id,
            resources=list(reason.resources),
        )
    if code is Code.STATE_LOCK_HELD:
        holder = f.get("holder")
        if holder == "release":
            msg = (
                f"state lock on {_what(reason.resources)} held by running release "
                f"{reason.release_id}"
            )
            remedy = f"wait for it: relo release logs {reason.release_id} --follow"
        else:
            who = (
                f"finished release {reason.release_id}"
                if reason.release_id is not None
                else f"an unknown holder ({f.get('owner')})"
            )
            since = f" since {_when(f.get('since'))}" if f.get("since") else ""
            ttl = f.get("ttl_left_ms")
            ttl_text = (
                f", TTL left {int(ttl) / 1000:.0f}s" if isinstance(ttl, int) and ttl >= 0 else ""
            )
            msg = f"state lock on {_what(reason.resources)} held by {who}{since}{ttl_text}"
            target = (
                "--all"
                if ENVIRONMENT in reason.resources or not reason.resources
                else reason.resources[0]
            )
            remedy = f"relo lock break {pe} {target} --reason 'stale lock'"
        return Finding(
            code=str(code),
            message=msg,
            remedy=remedy,
            release_id=reason.release_id,
            resources=list(reason.resources),
        )
    if code is Code.APPROVAL_PENDING:
        return Finding(
            code=str(code),
            message=f"release {reason.release_id} waits for approval",
            remedy=f"relo release approve {reason.release_id}",
            release_id=reason.release_id,
        )
    if code is Code.PARALLEL_DISABLED:
        return Finding(
            code=str(code),
            message=f"parallel releases are off in {project}/{environment}, and "
            f"release {reason.release_id} is running",
            remedy=f"relo env settings {pe} --parallel on",
            release_id=reason.release_id,
        )
    if code is Code.APPROVAL_DISABLES_PARALLEL:
        return Finding(
            code=str(code),
            message=f"the approval workflow is on in {project}/{environment}, which "
            f"disables parallel releases; release {reason.release_id} is "
            "running",
            remedy=f"relo env settings {pe} --approval off",
            release_id=reason.release_id,
        )
    if code is Code.MAX_PARALLEL_REACHED:
        running, cap = f.get("running"), f.get("max")
        return Finding(
            code=str(code),
            message=f"max parallel releases reached ({running} of {cap} running)",
            remedy=f"relo env settings {pe} --max-parallel "
            f"{int(cap) + 1 if isinstance(cap, int) else 'N'}",
        )
    return Finding(code=str(code), message=str(code))  # pragma: no cover - exhaustive above


# -- diagnose (SPEC §8): the policy's reasons per release, grouped, and facts around them --


class Fact(StrEnum):
    """Finding codes for facts outside the admission policy (stable, like :class:`Code`)."""

    NO_WORKER = "no_worker"
    WORKERS_UNREACHABLE = "workers_unreachable"
    WAITING_FOR_WORKER = "waiting_for_worker"
    LOCKS_UNREADABLE = "locks_unreadable"
    SCHEDULE_SKIPPED_BUSY = "schedule_skipped_busy"
    IN_SYNC = "in_sync"
    OUT_OF_SYNC = "out_of_sync"
    APP_DEGRADED = "app_degraded"
    UNKNOWN_NAME = "unknown_name"
    ROLLBACK_FAILED = "rollback_failed"
    RESOURCE_UNKNOWN = "resource_unknown"
    RELEASE_RUNNING = "release_running"
    RELEASE_FINISHED = "release_finished"


#: Reasons that hold every waiting release alike (not about one release).
ENVIRONMENT_WIDE = frozenset(
    {Code.PROJECT_PAUSED, Code.ENVIRONMENT_PAUSED, Code.OUTSIDE_WINDOW, Code.MAX_PARALLEL_REACHED}
)
#: Reasons whose sentence already names the waiting release.
_NAMES_SUBJECT = frozenset({Code.WAITING_BEHIND, Code.APPROVAL_PENDING})
#: How many waiting releases a grouped finding lists by id.
_LIST_AT_MOST = 10


def _subject(ids: Sequence[int]) -> str:
    if len(ids) == 1:
        return f"release {ids[0]} waits"
    shown = ", ".join(str(i) for i in ids[:_LIST_AT_MOST])
    more = f", … ({len(ids)} in all)" if len(ids) > _LIST_AT_MOST else ""
    return f"releases {shown}{more} wait"


def reason_finding(
    reason: Reason, project: str, environment: str, held: Sequence[int] = ()
) -> Finding:
    """One reason as a finding whose ``release_id``/``resources`` are the reason's own.

    ``held`` are the waiting releases the reason holds: the message starts with them
    (``release 7 waits: …``) unless it names its subject already.
    """
    subject_id = held[0] if len(held) == 1 else None
    f = finding_of(reason, project, environment, subject_id)
    message = f.message
    if held and reason.code not in _NAMES_SUBJECT:
        message = f"{_subject(held)}: {message}"
    elif reason.code is Code.WAITING_BEHIND and len(held) > 1:
        message = message.replace("the next release is", _subject(held).replace(" wait", " are"))
    return f.model_copy(
        update={
            "message": message,
            "release_id": reason.release_id,
            "resources": list(reason.resources),
        }
    )


def findings_for(
    decision: Decision, release_id: int, project: str, environment: str
) -> list[Finding]:
    """Every reason the policy holds ``release_id`` for, as findings, in the policy's order.

    Pure: ``(code, release_id, resources)`` of the result are exactly the reasons' own.
    """
    return [
        reason_finding(r, project, environment, (release_id,)) for r in decision.reasons(release_id)
    ]


def summarize(decision: Decision, project: str, environment: str) -> list[Finding]:
    """The reasons of every waiting release, grouped so that a long queue stays readable.

    Environment-wide reasons (pauses, windows, the parallel cap) appear once, naming the
    releases they hold; a reason shared by several releases (the same lock, the same running
    release) appears once naming them all; of the queued releases a release waits behind,
    only the first one in the queue is named (deleting it is what unblocks the line).
    """
    groups: dict[tuple[object, ...], tuple[Reason, list[int]]] = {}
    for held_id, reasons in decision.held.items():
        behind_seen = False
        for r in reasons:
            if r.code is Code.WAITING_BEHIND:
                if behind_seen:
                    continue
                behind_seen = True
            if r.code in ENVIRONMENT_WIDE:
                key: tuple[object, ...] = (r.code,)
            else:
                key = (r.code, r.release_id, r.resources, r.facts.get("holder"))
            if key in groups:
                groups[key][1].append(held_id)
            else:
                groups[key] = (r, [held_id])
    out = []
    for reason, ids in groups.values():
        if reason.code is Code.APPROVAL_PENDING:
            out.append(reason_finding(reason, project, environment, ()))
        else:
            out.append(reason_finding(reason, project, environment, ids))
    return out


def parallel_hints(
    snapshot: Snapshot, decision: Decision, project: str, environment: str
) -> list[tuple[int | None, Finding]]:
    """Settings that keep releases from running side by side, beyond the policy's reasons.

    Returns ``(waiting release the hint is about, or None for the environment, finding)``:

    - approval on while parallel is set on: parallel execution is off (said for the
      environment, even when nothing waits, since the setting looks on);
    - parallel off (or disabled by approval) while a selective release waits behind a queued
      selective release with other targets: they would run together with parallel on.
    """
    pe = f"-p {project} -e {environment}"
    out: list[tuple[int | None, Finding]] = []
    claims = {c.release_id: c for c in snapshot.queue}
    approval_blocks = snapshot.approval_required and snapshot.parallel_releases
    if not snapshot.effective_parallel:
        code = Code.APPROVAL_DISABLES_PARALLEL if approval_blocks else Code.PARALLEL_DISABLED
        for held_id, reasons in decision.held.items():
            claim = claims.get(held_id)
            if claim is None or claim.whole:
                continue
            for r in reasons:
                other = claims.get(r.release_id) if r.release_id is not None else None
                if (
                    r.code is not Code.WAITING_BEHIND
                    or other is None
                    or other.whole
                    or claim.resources & other.resources
                ):
                    continue
                why = (
                    f"the approval workflow is on in {project}/{environment}, which disables "
                    "parallel releases"
                    if approval_blocks
                    else f"parallel releases are off in {project}/{environment}"
                )
                out.append(
                    (
                        held_id,
                        Finding(
                            code=str(code),
                            message=f"release {held_id} ({', '.join(sorted(claim.resources))}) "
                            f"and release {other.release_id} "
                            f"({', '.join(sorted(other.resources))}) target different "
                            f"resources but run one after the other: {why}",
                            remedy=f"relo env settings {pe} "
                            + ("--approval off" if approval_blocks else "--parallel on"),
                            release_id=other.release_id,
                        ),
                    )
                )
                break
    if approval_blocks:
        out.append(
            (
                None,
                Finding(
                    code=str(Code.APPROVAL_DISABLES_PARALLEL),
                    message=f"parallel releases are set on in {project}/{environment}, but the "
                    "approval workflow is on too, which disables them: releases run one at a "
                    "time",
                    remedy=f"relo env settings {pe} --approval off",
                ),
            )
        )
    return out


def stale_locks(snapshot: Snapshot) -> list[Reason]:
    """Live locks no running release owns (an expired worker, a hand-made lock) as reasons.

    The policy reports them only against the queued releases they block; this names them
    even when nothing waits.
    """
    running = {c.release_id for c in snapshot.running}
    out = []
    for lock in snapshot.locks:
        if lock.release_id is not None and lock.release_id in running:
            continue
        resources = (lock.resource,) if lock.scope == "resource" and lock.resource else ()
        out.append(
            Reason(
                Code.STATE_LOCK_HELD,
                lock.release_id,
                resources or (ENVIRONMENT,),
                MappingProxyType(
                    {
                        "holder": "unknown" if lock.release_id is None else "stale",
                        "owner": lock.owner,
                        "since": lock.since,
                        "ttl_left_ms": lock.ttl_left_ms,
                        "scope": lock.scope,
                    }
                ),
            )
        )
    return out


def when_text(value: object) -> str:
    """A time as findings print it."""
    return _when(value)


def unknown_name_finding(
    kind: str, name: str, existing: Sequence[str], message: str, listing_command: str = ""
) -> Finding:
    """An unknown project/environment/app/release, with the names that exist."""
    if existing:
        remedy = f"use an existing {kind or 'name'}: {', '.join(existing)}"
    elif listing_command:
        remedy = f"list them: {listing_command}"
    else:
        remedy = f"no {kind or 'name'} exists yet: relo blueprint apply -f FILE.yaml"
    return Finding(
        code=str(Fact.UNKNOWN_NAME),
        message=message,
        remedy=remedy,
        resources=[name] if kind == "resource" else [],
    )


def worker_finding(
    consumers: Sequence[str] | None, project: str, environment: str, waiting: Sequence[int]
) -> Finding | None:
    """``no_worker`` / ``workers_unreachable``: who consumes ``release.P.E`` (None: fine)."""
    queue = queue_name(project, environment)
    what = (
        f"{_subject(list(waiting))} for a worker"
        if waiting
        else "releases submitted now would wait"
    )
    if consumers is None:
        return Finding(
            code=str(Fact.WORKERS_UNREACHABLE),
            message=f"could not reach workers (Celery remote control did not answer) to "
            f"check who consumes {queue}",
            remedy="check the broker (RELO_BROKER_URL) and that workers run: "
            "celery -A workers.app inspect active_queues",
            release_id=waiting[0] if len(waiting) == 1 else None,
        )
    if consumers:
        return None
    return Finding(
        code=str(Fact.NO_WORKER),
        message=f"no worker consumes {queue}: {what}",
        remedy=f"start one: relo worker --environments {project}/{environment}  "
        "(or relo worker for every environment)",
        release_id=waiting[0] if len(waiting) == 1 else None,
    )


def waiting_for_worker_finding(
    release_id: int,
    dispatched_at: datetime | None,
    consumers: Sequence[str],
    project: str,
    environment: str,
) -> Finding:
    """A release handed to the workers that none has taken yet (all busy, or just sent)."""
    since = f" at {_when(dispatched_at)}" if dispatched_at else ""
    queue = queue_name(project, environment)
    return Finding(
        code=str(Fact.WAITING_FOR_WORKER),
        message=f"release {release_id} may start and was sent to {queue}{since}; it starts when "
        f"one of its workers ({', '.join(consumers)}) has a free slot",
        remedy=f"wait, or add workers: relo worker --environments {project}/{environment}",
        release_id=release_id,
    )
