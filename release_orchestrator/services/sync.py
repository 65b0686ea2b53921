"""CLI releases for CI pipelines (SPEC §6): ``relo release sync`` and ``relo release wait``.

``sync`` submits one selective release applying the apps that are out of sync (or
``Unknown``); ``wait`` polls until every app is ``Synced`` and ``Healthy`` with no release
in flight for it, fails as soon as a release it waits for ends badly or an app is left
``Degraded``, and on timeout says what blocks (the ``relo diagnose`` findings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..domain import Health, Release, ReleaseStatus, ReleaseType, SyncStatus, Target, Trigger
from ..domain.models import AppProgress, WaitResult
from ..errors import InvalidRequest, ReleaseFailed, Unavailable, WaitTimeout
from ..storage.repository import Repository
from . import releases
from .context import Context
from .diagnose import FAILED_STATUSES, diagnose, resolve_apps, split_apps, targets
from .explain import explain

#: Final statuses that mean the awaited change will not happen by itself.
ABANDONED_STATUSES = frozenset({ReleaseStatus.CANCELLED, ReleaseStatus.REJECTED})


def out_of_sync(
    ctx: Context, project: str, environment: str, apps: str | Sequence[str]
) -> tuple[list[str], list[str]]:
    """``(apps as TYPE/NAME, those not Synced)``; raises :class:`NotFound` for unknown names."""
    refs = split_apps(apps)
    if not refs:
        raise InvalidRequest("give at least one app (comma-separated TYPE/NAME or NAME)")
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        keys = resolve_apps(repo, prow, refs)
        statuses = {r.resource: r for r in repo.resource_statuses(prow, env)}
    return keys, [k for k in keys if statuses[k].sync is not SyncStatus.SYNCED]


def sync(
    ctx: Context,
    project: str,
    environment: str,
    apps: str | Sequence[str],
    *,
    force: bool = False,
    comment: str | None = None,
    trigger: Trigger = Trigger.API,
    triggered_by: str | None = None,
) -> Release | None:
    """Submit one selective release applying the apps that are out of sync (or Unknown).

    Returns it, or None when every app is already in sync (nothing is recorded). With
    ``force`` every app is released. Unknown project/environment/app: :class:`NotFound`
    naming what exists.
    """
    keys, stale = out_of_sync(ctx, project, environment, apps)
    chosen = keys if force else stale
    if not chosen:
        return None
    return releases.submit(
        ctx,
        releases.ReleaseRequest(
            project=project,
            environment=environment,
            type=ReleaseType.SELECTIVE,
            targets=[Target(resource=k) for k in chosen],
            comment=comment or f"relo release sync {','.join(chosen)}",
            trigger=trigger,
            triggered_by=triggered_by,
        ),
    )


# -- wait ---------------------------------------------------------------------------------
@dataclass
class _Tracker:
    """Releases seen acting on the apps during the wait, so their end is noticed."""

    seen: dict[int, Release] = field(default_factory=dict)

    def watch(self, release: Release) -> None:
        self.seen[release.id] = release

    def pending(self, active_ids: set[int]) -> list[int]:
        """Watched releases no longer active whose end has not been read yet."""
        return [
            rid for rid, r in self.seen.items() if rid not in active_ids and not r.status.is_final
        ]


@dataclass(frozen=True)
class _Poll:
    progress: list[AppProgress]
    ended: list[Release]
    #: The last release of each Degraded app with nothing in flight for it.
    degraded_by: dict[str, Release] = field(default_factory=dict)


def _poll(
    ctx: Context, project: str, environment: str, keys: Sequence[str], tracker: _Tracker
) -> _Poll:
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        statuses = {r.resource: r for r in repo.resource_statuses(prow, env)}
        active = repo.active(prow, env)
        active_ids = {r.id for r in active}
        ended = [repo.release(rid, with_steps=False) for rid in tracker.pending(active_ids)]
        degraded_by = {
            k: repo.release(st.last_release_id, with_steps=False)
            for k, st in statuses.items()
            if k in keys
            and st.health is Health.DEGRADED
            and st.last_release_id is not None
            and not any(targets(r, k) for r in active)
        }
    for release in ended:
        tracker.watch(release)
    involved = [r for r in active if any(targets(r, k) for k in keys)]
    for release in involved:
        tracker.watch(release)
    holds = {}
    if any(r.status is not ReleaseStatus.RUNNING for r in involved):
        holds = explain(ctx, project, environment)
    progress = []
    for key in keys:
        st = statuses[key]
        mine = [r for r in involved if targets(r, key)]
        # running first, then queue order, then pending approval (repo.active's order)
        first = mine[0] if mine else None
        hold = holds.get(first.id) if first is not None else None
        waiting_on = hold[0].message if hold else None
        if first is not None and first.status is ReleaseStatus.QUEUED and not hold:
            waiting_on = "free to start: waiting for a worker to take it"
        progress.append(
            AppProgress(
                app=key,
                sync=st.sync,
                health=st.health,
                release_id=first.id if first else None,
                release_status=first.status if first else None,
                position=first.position if first else None,
                waiting_on=waiting_on,
                ready=not mine and st.sync is SyncStatus.SYNCED and st.health is Health.HEALTHY,
            )
        )
    return _Poll(
        progress=progress,
        ended=[r for r in ended if r.status.is_final],
        degraded_by=degraded_by,
    )


def _failure(poll: _Poll, keys: Sequence[str]) -> tuple[str, int | None] | None:
    """Why the wait has failed, if it has: a release it waited for ended badly, or an app is
    Degraded with nothing in flight to repair it, or its release was cancelled/rejected."""
    by_app = {p.app: p for p in poll.progress}
    for release in poll.ended:
        if release.status in FAILED_STATUSES:
            return (
                f"release {release.id} {release.status}"
                + (f": {release.error}" if release.error else ""),
                release.id,
            )
    for p in poll.progress:
        if p.release_id is None and p.health is Health.DEGRADED:
            last = poll.degraded_by.get(p.app)
            if last is None:
                return f"{p.app} is Degraded and no release targets it", None
            return (
                f"{p.app} is Degraded: release {last.id} {last.status}"
                + (f": {last.error}" if last.error else ""),
                last.id,
            )
    for release in poll.ended:
        if release.status not in ABANDONED_STATUSES:
            continue
        stuck = [
            k
            for k in keys
            if targets(release, k) and by_app[k].release_id is None and not by_app[k].ready
        ]
        if stuck:
            return (
                f"release {release.id} was {release.status}; {', '.join(stuck)} "
                f"{'is' if len(stuck) == 1 else 'are'} still {by_app[stuck[0]].sync} and no "
                "release targets it",
                release.id,
            )
    return None


def wait(
    ctx: Context,
    project: str,
    environment: str,
    apps: str | Sequence[str],
    *,
    sync_first: bool = False,
    force: bool = False,
    timeout: float | None = None,
    interval: float = 2.0,
    on_change: Callable[[WaitResult], None] | None = None,
    trigger: Trigger = Trigger.API,
    triggered_by: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Block until every app is Synced and Healthy and no release targets it.

    ``sync_first`` submits a sync of the out-of-sync apps first (``force``: of every app).
    Calls ``on_change`` with a ``waiting`` result whenever an app's state changes. Raises
    :class:`ReleaseFailed` (a release targeting an app ended failed / rolled_back /
    rollback_failed, was cancelled or rejected leaving an app behind, or an app is Degraded
    with nothing in flight) and :class:`WaitTimeout` after ``timeout`` seconds (its
    ``findings`` detail says what blocks); both carry the final ``result``. While the
    database or Redis does not answer it keeps trying, until the timeout
    (:class:`Unavailable` then).
    """
    if interval <= 0:
        raise InvalidRequest(f"--interval must be a positive number of seconds, got {interval}")
    if timeout is not None and timeout < 0:
        raise InvalidRequest(f"--timeout must be zero or more seconds, got {timeout}")
    start = clock()
    keys, _ = out_of_sync(ctx, project, environment, apps)
    tracker = _Tracker()
    synced = None
    if sync_first:
        synced = sync(
            ctx,
            project,
            environment,
            keys,
            force=force,
            trigger=trigger,
            triggered_by=triggered_by,
        )
        if synced is not None:
            tracker.watch(synced)

    def result(poll: _Poll, status: str, **extra: object) -> WaitResult:
        return WaitResult(
            project=project,
            environment=environment,
            status=status,
            apps=poll.progress,
            synced_release_id=synced.id if synced else None,
            releases=sorted(tracker.seen),
            elapsed_s=round(clock() - start, 3),
            **extra,  # type: ignore[arg-type]
        )

    last: list[AppProgress] | None = None
    while True:
        try:
            poll = _poll(ctx, project, environment, keys, tracker)
        except Unavailable:
            # a database/Redis blip must not fail a long CI wait: retry until the timeout
            if timeout is not None and clock() - start >= timeout:
                raise
            sleep(interval)
            continue
        if poll.progress != last:
            last = poll.progress
            if on_change is not None:
                on_change(result(poll, "waiting"))
        failure = _failure(poll, keys)
        if failure is not None:
            message, release_id = failure
            final = result(poll, "failed", error=message, failed_release_id=release_id)
            raise ReleaseFailed(message, result=final)
        if all(p.ready for p in poll.progress):
            return result(poll, "ready")
        elapsed = clock() - start
        if timeout is not None and elapsed >= timeout:
            findings = diagnose(ctx, project, environment, apps=keys)
            blocking = [p for p in poll.progress if not p.ready]
            message = f"timed out after {timeout:g}s waiting for " + ", ".join(
                p.app + (f" (release {p.release_id} {p.release_status})" if p.release_id else "")
                for p in blocking
            )
            final = result(poll, "timeout", error=message, findings=findings)
            raise WaitTimeout(message, result=final, findings=findings)
        remaining = None if timeout is None else timeout - elapsed
        sleep(interval if remaining is None else max(0.0, min(interval, remaining)))
