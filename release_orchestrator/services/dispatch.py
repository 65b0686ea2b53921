"""Dispatch: apply the admission policy's decision to one environment, and reconcile.

``evaluate`` is called whenever a release is submitted, approved, deleted or finishes, and
on settings/pause changes; ``reconcile`` (beat, every tick) repairs what a lost message or a
crash left behind. Both are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..domain import ReleaseStatus, ReleaseType
from ..domain.names import env_key, queue_name
from ..policy.admission import Claim, Code, Decision, LockInfo, decide
from ..storage.records import EnvironmentRecord, PausedRecord, WaitingRecord
from ..storage.repository import Repository
from .context import Context
from .snapshot import build_snapshot, expire_pauses, lock_infos

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dispatch:
    """A release the dispatcher claimed for a worker: to be sent after commit."""

    project: str
    environment: str
    release_id: int
    description: str
    hint: dict[str, Any] | None = None


def lock_hint(row: WaitingRecord, project: str, environment: str) -> dict[str, Any]:
    """What a release locks, carried in its message: the worker takes the state locks first
    and reads the release in the claiming transaction, where the row is checked against it
    (type and targets of a release never change)."""
    whole = ReleaseType(row.type).needs_whole_environment
    return {
        "env_id": row.environment_id,
        "project": project,
        "environment": environment,
        "whole": whole,
        "resources": [] if whole else sorted(t["resource"] for t in row.targets),
    }


def describe(row: WaitingRecord, project: str, environment: str) -> str:
    """A readable one-liner for Flower (argsrepr)."""
    text = f"release={row.id} env={project}/{environment} type={row.type}"
    if row.type == ReleaseType.SELECTIVE and row.targets:
        text += " targets=" + ",".join(f"{t['resource']}:{t['action']}" for t in row.targets)
    return text


def decide_and_mark(
    ctx: Context,
    repo: Repository,
    project: PausedRecord,
    env: EnvironmentRecord,
    now: datetime,
    locks: Sequence[LockInfo] | None = None,
    also: Claim | None = None,
) -> tuple[Decision, list[Dispatch]]:
    """Within a write transaction holding the environment lock: decide and mark dispatched.

    ``locks``: the environment's state locks when the caller read them just before the
    transaction (a Redis round trip less while holding the write lock); read here otherwise.
    A release that finished between that read and this transaction released its locks
    before its finishing transaction committed, so the list can hold locks of a release this
    transaction sees ended: when such a lock holds a release, the locks are read again here
    and the decision made again (:func:`held_by_stale_lock`).
    ``also``: a waiting release whose complete reasons the decision should give (see
    :func:`build_snapshot`; it does not change what starts).
    """
    expire_pauses(repo, project, env, now)
    read_before = locks is not None
    if locks is None:
        locks = lock_infos(ctx, env_key(project.name, env.name))
    rows: dict[int, WaitingRecord] = {}
    snapshot = build_snapshot(repo, project, env, now, locks, rows=rows, also=also)
    decision = decide(snapshot)
    if read_before and held_by_stale_lock(decision):
        locks = lock_infos(ctx, env_key(project.name, env.name))
        rows = {}
        snapshot = build_snapshot(repo, project, env, now, locks, rows=rows, also=also)
        decision = decide(snapshot)
    out: list[Dispatch] = []
    for release_id in decision.start:
        row = rows.get(release_id) or repo.loaded_release_row(release_id)
        repo.mark_dispatched(row, now)
        out.append(
            Dispatch(
                project.name,
                env.name,
                row.id,
                describe(row, project.name, env.name),
                lock_hint(row, project.name, env.name),
            )
        )
    return decision, out


def held_by_stale_lock(decision: Decision) -> bool:
    """Whether a release waits for a lock whose holder is a release neither running nor
    dispatched (a finished release's lock: left behind, or read before it was released)."""
    return any(
        r.code is Code.STATE_LOCK_HELD and r.facts.get("holder") == "stale"
        for reasons in decision.held.values()
        for r in reasons
    )


def send(ctx: Context, dispatches: list[Dispatch]) -> None:
    """Publish after commit. A failure is logged: the reconciler re-sends."""
    for d in dispatches:
        try:
            ctx.transport.send_release(
                d.project, d.environment, d.release_id, d.description, hint=d.hint
            )
        except Exception:
            log.exception("could not publish release %s; the reconciler will re-send", d.release_id)


def evaluate(ctx: Context, env_id: int) -> list[int]:
    """Start every queued release of the environment that may start now. Returns their ids."""
    now = ctx.clock.now()
    with ctx.db.session() as s:
        repo = Repository(s)
        project, env = repo.environment_view_by_id(env_id, lock=True)
        _, dispatches = decide_and_mark(ctx, repo, project, env, now)
    send(ctx, dispatches)
    return [d.release_id for d in dispatches]


def reconcile(ctx: Context) -> dict[str, int]:
    """Repair what lost messages and crashes left behind. Safe to run anywhere, any time.

    - environments with waiting releases are re-evaluated (pause expiry, window opening,
      a lost finish notification);
    - releases dispatched long ago but never claimed are re-sent when their queue is empty
      (the message was lost; a duplicate would be a no-op anyway);
    - running releases whose lease vanished from Redis and whose heartbeat is older than the
      lease TTL are failed as "worker lost", their in-flight resources become Unknown.
    """
    from .engine import fail_lost_release

    now = ctx.clock.now()
    stats = {"evaluated": 0, "started": 0, "resent": 0, "lost": 0}
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        env_ids = set(repo.environments_with_waiting())
        env_ids.update(_paused_env_ids_expired(repo, now))
        stale = [
            (r.id, r.environment_id, r.type, r.targets)
            for r in repo.stale_dispatched(now - timedelta(seconds=ctx.settings.redispatch_after))
        ]
        running = [
            (r.id, r.environment_id, r.lock_owner, r.heartbeat_at) for r in repo.running_all()
        ]
        names = {
            eid: repo.names_of(eid)
            for eid in {e for e in env_ids} | {x[1] for x in stale} | {x[1] for x in running}
        }
    ttl = timedelta(seconds=ctx.settings.lock_ttl)
    for release_id, env_id, owner, heartbeat in running:
        if heartbeat is not None and now - heartbeat < ttl:
            continue
        project, environment = names[env_id]
        try:
            holders = ctx.locks.holders(env_key(project, environment))
        except Exception:
            continue  # Redis down: cannot tell; try next tick
        if any(h.owner == owner for h in holders):
            continue
        if fail_lost_release(ctx, release_id, now):
            stats["lost"] += 1
            env_ids.add(env_id)
    for release_id, env_id, _type, _targets in stale:
        project, environment = names[env_id]
        length = ctx.transport.queue_length(queue_name(project, environment))
        if length:
            continue
        with ctx.db.session() as s:
            row = Repository(s).release_row(release_id)
            if row.status != ReleaseStatus.QUEUED or row.dispatched_at is None:
                continue
            row.dispatched_at = now
            row.dispatch_count = (row.dispatch_count or 0) + 1
            description = describe(row, project, environment)
            hint = lock_hint(row, project, environment)
        send(ctx, [Dispatch(project, environment, release_id, description, hint)])
        stats["resent"] += 1
    for env_id in sorted(env_ids):
        stats["evaluated"] += 1
        stats["started"] += len(evaluate(ctx, env_id))
    return stats


def _paused_env_ids_expired(repo: Repository, now: datetime) -> list[int]:
    out = []
    for project, env in repo.environments():
        for row in (project, env):
            if row.pause_until is not None and row.pause_until <= now:
                out.append(env.id)
    return out
