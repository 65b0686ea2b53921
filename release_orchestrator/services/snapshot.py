"""Build the admission policy's snapshot of one environment from storage and Redis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..domain import PauseScope, ReleaseType
from ..errors import Unavailable
from ..locks import LockHolder
from ..policy.admission import Claim, LockInfo, PauseState, Snapshot, WindowHold
from ..policy.windows import Window, WindowKind, window_state
from ..storage.records import EnvironmentRecord, PausedRecord, WaitingRecord
from ..storage.repository import Repository
from .context import Context

#: Queued releases read per page when looking for ones that may start.
PAGE = 200


def claim_of(row: WaitingRecord) -> Claim:
    return claim_from(row.id, row.type, row.targets)


def claim_from(release_id: int, rtype: str, targets: Sequence[Mapping[str, Any]] | None) -> Claim:
    if ReleaseType(rtype).needs_whole_environment:
        return Claim(release_id, whole=True)
    return Claim(release_id, whole=False, resources=frozenset(t["resource"] for t in targets or ()))


def pause_state(row: PausedRecord, now: datetime) -> PauseState | None:
    if row.pause_at is None or (row.pause_until is not None and row.pause_until <= now):
        return None
    return PauseState(
        by=row.pause_by or "unknown",
        at=row.pause_at,
        reason=row.pause_reason,
        until=row.pause_until,
    )


def expire_pauses(
    repo: Repository, project: PausedRecord, env: PausedRecord, now: datetime
) -> None:
    """Clear pauses whose ``until`` has passed, with an audit event (call in a write tx).

    ``project`` and ``env`` may be read-only views: they keep the expired values, which
    :func:`pause_state` reads as no pause. Of two transactions expiring one project pause,
    one records the event."""
    for row, scope in ((project, PauseScope.PROJECT), (env, PauseScope.ENVIRONMENT)):
        if row.pause_at is not None and row.pause_until is not None and row.pause_until <= now:
            until = row.pause_until
            if not repo.clear_pause(str(scope), row.id, until):
                continue
            repo.event(
                at=now,
                actor="relo",
                kind="resumed",
                project=project.name,
                environment=env.name if scope is PauseScope.ENVIRONMENT else None,
                message=f"{scope} pause expired at {until.isoformat()}",
                data={"scope": str(scope), "expired": True},
            )


def windows_of(repo: Repository, env_id: int) -> list[Window]:
    return [
        Window(
            id=w.id,
            kind=WindowKind(w.kind),
            cron=w.cron,
            duration=timedelta(seconds=w.duration_s),
            timezone=w.timezone,
        )
        for w in repo.windows(env_id)
    ]


def window_hold(repo: Repository, env_id: int, now: datetime) -> WindowHold | None:
    if not repo.may_have_windows(env_id):
        return None
    windows = windows_of(repo, env_id)
    if not windows:
        return None
    state = window_state(windows, now)
    if state.open:
        return None
    return WindowHold(
        reason=state.reason or "outside_allow_window",
        next_opening=state.next_opening,
        window_id=state.blocking.id if state.blocking else None,
    )


def lock_infos(ctx: Context, env_key: str, strict: bool = False) -> tuple[LockInfo, ...]:
    """Live state locks of an environment; empty when Redis does not answer (unless strict)."""
    try:
        holders = ctx.locks.holders(env_key)
    except Exception as exc:  # a dead Redis must not stop admission decisions
        if strict:
            raise Unavailable(f"cannot read state locks: {exc}") from exc
        return ()
    return lock_infos_of(holders)


def lock_infos_of(holders: Iterable[LockHolder]) -> tuple[LockInfo, ...]:
    """The policy's view of lock holders."""
    return tuple(
        LockInfo(
            scope=h.scope,
            resource=h.resource,
            owner=h.owner,
            release_id=h.release_id,
            since=h.since,
            ttl_left_ms=h.ttl_left_ms,
        )
        for h in holders
    )


def build_snapshot(
    repo: Repository,
    project: PausedRecord,
    env: EnvironmentRecord,
    now: datetime,
    locks: Sequence[LockInfo],
    *,
    full_queue: bool = False,
    also: Claim | None = None,
    rows: dict[int, WaitingRecord] | None = None,
) -> Snapshot:
    """The environment as the policy sees it.

    With ``full_queue`` every queued release is included (diagnose, explain); otherwise only
    the releases that can matter for what starts now (the dispatcher's hot path): the head
    when parallel is off; with parallel on, the first release of each distinct claim up to
    the first whole-environment one (see :func:`_queue_prefix`). The decision's ``start`` is
    then the same as over the full queue; its reasons for held releases may be partial.

    ``also`` (parallel off only): the claim of a waiting release (not yet dispatched) appended
    to the head, so that the decision gives its complete reasons: with parallel off a queued
    release is held by what runs, by the head of the queue (the earliest release it waits
    behind) and by what holds the whole queue (pauses, windows, foreign locks), never by the
    releases between.

    ``rows``: filled with the queued rows read, by id (the session's identity map holds
    them only weakly: the dispatcher marks the ones that start without reading them again).
    """
    parallel = env.parallel_releases and not env.approval_required
    if not parallel and not full_queue:  # the hot path: what runs and the head, one query
        claims, read = repo.running_claims_and_head(env.id)
        running = tuple(claim_from(*r) for r in claims)
    else:
        running = tuple(claim_from(*r) for r in repo.running_claims(env.id))
        read = repo.waiting_rows(env.id) if full_queue else _queue_prefix(repo, env, running)
    if rows is not None:
        rows.update((r.id, r) for r in read)
    queue = tuple(claim_of(r) for r in read)
    serial_head = not parallel and not full_queue
    if also is not None and serial_head and all(c.release_id != also.release_id for c in queue):
        queue += (also,)
    return Snapshot(
        now=now,
        parallel_releases=env.parallel_releases,
        max_parallel_releases=env.max_parallel_releases,
        approval_required=env.approval_required,
        project_pause=pause_state(project, now),
        environment_pause=pause_state(env, now),
        window_hold=window_hold(repo, env.id, now),
        running=running,
        queue=queue,
        pending_approval=tuple(repo.pending_ids(env.id)) if full_queue else (),
        locks=tuple(locks),
    )


def _queue_prefix(
    repo: Repository, env: EnvironmentRecord, running: tuple[Claim, ...]
) -> list[WaitingRecord]:
    """The waiting releases that can matter for what starts now (parallel releases on).

    A release that needs exactly what an earlier waiting one needs is held by it and holds
    nothing that one does not, so only the first release of each distinct claim is read
    (:meth:`Repository.waiting_heads`): the decision's ``start`` is the same as over the
    whole queue, at a cost that does not grow with the queue's length. Everything after the
    first whole-environment release waits behind it.
    """
    free = env.max_parallel_releases - len(running)
    if free <= 0:
        return []
    heads = repo.waiting_heads(env.id)
    if heads is not None:
        out: list[WaitingRecord] = []
        for row in heads:
            out.append(row)
            if ReleaseType(row.type).needs_whole_environment:
                break
        return out
    return _paged_prefix(repo, env)


def _paged_prefix(repo: Repository, env: EnvironmentRecord) -> list[WaitingRecord]:
    """The queue read page by page up to its first whole-environment release."""
    out: list[WaitingRecord] = []
    after: int | None = None
    while True:
        rows = repo.waiting_rows(env.id, limit=PAGE, after_seq=after)
        for row in rows:
            out.append(row)
            if ReleaseType(row.type).needs_whole_environment:
                return out
        if len(rows) < PAGE:
            return out
        after = rows[-1].queue_seq


def is_busy(repo: Repository, env_id: int) -> bool:
    """Any release running, queued or waiting for approval (a due schedule is skipped as
    ``busy``; counting pending approvals keeps scheduled releases from piling up unapproved)."""
    return repo.count_active(env_id) > 0
