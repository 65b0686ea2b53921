"""Paused releases (SPEC §4): pause and resume a project or an environment; ``env show``.

A pause lives on the project row (every environment of the project, including ones created
while it lasts) or on the environment row: who, when, why and optionally until when. The
admission policy holds every queued release while a pause is in force (the snapshot's
``project_pause`` / ``environment_pause``); running releases finish. Nothing here starts
or stops a release directly: after each change the environments concerned are re-evaluated
by the dispatcher, which starts what the policy allows, in FIFO order.

Semantics an operator relies on:

- ``until`` is an aware time in the future (ISO 8601 text must carry ``Z`` or an offset: a
  freeze that ends an hour early because of a timezone guess is worse than a refused
  command). When it passes the pause is no longer in force; the reconciler (beat) clears it
  with a ``resumed`` event and starts the held releases.
- Pausing a scope that is already paused replaces that pause: who and since when become
  this call's, reason and until become exactly what this call gives (no ``until`` = until
  resumed). The previous pause is kept in the event's data.
- Resuming a scope that is not paused is a no-op (no event, ``resumed`` is None), so a
  maintenance script can always end with ``relo env resume``, even after ``--until`` passed.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..domain import Pause, PauseScope, ReleaseStatus, SkipReason
from ..domain.models import EnvironmentView, QueueSummary, ResumeResult
from ..errors import InvalidRequest
from ..policy.windows import window_state
from ..storage.convert import pause_of, settings_of
from ..storage.repository import Repository
from ..storage.tables import EnvironmentRow, ProjectRow
from .context import Context
from .dispatch import evaluate
from .explain import explain
from .snapshot import pause_state, window_hold, windows_of
from .windows import window_models

#: Longest pause reason kept (like a release comment).
MAX_REASON = 2000

_EXAMPLE = "e.g. 2026-03-01T18:00:00+01:00 or 2026-03-01T17:00:00Z"


def parse_until(value: datetime | str | None, now: datetime) -> datetime | None:
    """``--until`` as an aware UTC datetime strictly after ``now``, or None.

    Text is ISO 8601 with a ``Z`` or an offset; a time without a timezone is refused
    (:class:`InvalidRequest`), as is a time that is not in the future.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        try:
            when = datetime.fromisoformat(iso)
        except ValueError:
            raise InvalidRequest(f"--until '{text}' is not an ISO 8601 time ({_EXAMPLE})") from None
    else:
        when = value
        text = value.isoformat()
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidRequest(
            f"--until '{text}' has no timezone: add Z (UTC) or an offset ({_EXAMPLE})"
        )
    when = when.astimezone(timezone.utc)
    if when <= now:
        raise InvalidRequest(
            f"--until {when:%Y-%m-%d %H:%M:%S} UTC is not in the future "
            f"(now is {now.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC)"
        )
    return when


def _clean_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    text = " ".join(reason.split())  # one line: reasons appear inside one-line messages
    if len(text) > MAX_REASON:
        raise InvalidRequest(f"--reason is longer than {MAX_REASON} characters")
    return text or None


def _scope(
    repo: Repository, project: str, environment: str | None
) -> tuple[ProjectRow, list[EnvironmentRow]]:
    """The project and the environments a pause of this scope covers, their rows locked.

    Locking the environment rows serializes the change with the dispatcher (which decides
    under the environment's lock), so no release starts after the change commits on a
    decision made before it.
    """
    if environment is not None:
        prow, env = repo.environment(project, environment, lock=True)
        return prow, [env]
    prow = repo.project(project)
    envs = [repo.environment(project, e.name, lock=True)[1] for _, e in repo.environments(project)]
    return prow, envs


def _label(project: str, environment: str | None) -> str:
    return (
        f"project '{project}'" if environment is None else f"environment '{project}/{environment}'"
    )


def _pause_data(pause: Pause | None) -> dict[str, object] | None:
    if pause is None:
        return None
    return {
        "by": pause.paused_by,
        "at": pause.paused_at.isoformat(),
        "reason": pause.reason,
        "until": pause.until.isoformat() if pause.until else None,
    }


def _in_force(
    row: ProjectRow | EnvironmentRow, project: str, environment: str | None, now: datetime
) -> Pause | None:
    """The pause of ``row`` if it is in force at ``now`` (an expired ``until`` is not)."""
    return pause_of(row, project, environment) if pause_state(row, now) is not None else None


def pause(
    ctx: Context,
    project: str,
    environment: str | None = None,
    *,
    reason: str | None = None,
    until: datetime | str | None = None,
) -> Pause:
    """Pause a project (``environment`` None) or one environment; returns the pause in force.

    Records a ``paused`` event (who, why, until; the replaced pause if there was one).
    Raises :class:`InvalidRequest` for a bad ``until`` or reason and :class:`NotFound` for an
    unknown project or environment; nothing changes then.
    """
    now = ctx.clock.now()
    until_at = parse_until(until, now)
    text = _clean_reason(reason)
    actor = ctx.actor
    with ctx.db.session() as s:
        repo = Repository(s)
        prow, envs = _scope(repo, project, environment)
        row: ProjectRow | EnvironmentRow = prow if environment is None else envs[0]
        previous = _in_force(row, project, environment, now)
        row.pause_by, row.pause_at, row.pause_reason, row.pause_until = actor, now, text, until_at
        label = _label(project, environment)
        message = f"{label} {'pause updated' if previous else 'paused'} by {actor}"
        if text:
            message += f": {text}"
        if until_at:
            message += f" (until {until_at:%Y-%m-%d %H:%M:%S} UTC)"
        scope = PauseScope.PROJECT if environment is None else PauseScope.ENVIRONMENT
        repo.event(
            at=now,
            actor=actor,
            kind="paused",
            project=project,
            environment=environment,
            message=message,
            data={
                "scope": str(scope),
                "reason": text,
                "until": until_at.isoformat() if until_at else None,
                "replaced": _pause_data(previous),
            },
        )
        result = pause_of(row, project, environment)
        env_ids = [e.id for e in envs]
    assert result is not None
    for env_id in env_ids:  # a pause starts nothing; this also clears expired pauses
        evaluate(ctx, env_id)
    return result


def resume(ctx: Context, project: str, environment: str | None = None) -> ResumeResult:
    """Lift the pause of a project or an environment and start the held releases at once.

    A scope that is not paused is left as it is (``resumed`` None, no event). Every
    environment of the scope is re-evaluated either way; ``started`` are the releases
    dispatched. ``still_paused`` names pauses that keep holding releases of the scope.
    """
    now = ctx.clock.now()
    actor = ctx.actor
    scope = PauseScope.PROJECT if environment is None else PauseScope.ENVIRONMENT
    with ctx.db.session() as s:
        repo = Repository(s)
        prow, envs = _scope(repo, project, environment)
        row: ProjectRow | EnvironmentRow = prow if environment is None else envs[0]
        lifted = _in_force(row, project, environment, now)
        if lifted is not None:
            row.pause_by = row.pause_at = row.pause_reason = row.pause_until = None
            repo.event(
                at=now,
                actor=actor,
                kind="resumed",
                project=project,
                environment=environment,
                message=f"{_label(project, environment)} resumed by {actor} (paused by "
                f"{lifted.paused_by} since {lifted.paused_at:%Y-%m-%d %H:%M:%S} UTC)",
                data={"scope": str(scope), "expired": False, "pause": _pause_data(lifted)},
            )
        if environment is None:
            others = [_in_force(e, project, e.name, now) for e in envs]
        else:
            others = [_in_force(prow, project, None, now)]
        env_ids = [e.id for e in envs]
    started: list[int] = []
    for env_id in env_ids:
        started.extend(evaluate(ctx, env_id))
    return ResumeResult(
        scope=scope,
        project=project,
        environment=environment,
        resumed=lifted,
        still_paused=[p for p in others if p is not None],
        started=started,
    )


def hold_reason_for_schedule(
    repo: Repository, project: ProjectRow, env: EnvironmentRow, now: datetime
) -> SkipReason | None:
    """Why a scheduled release falling due at ``now`` must be skipped, as far as pauses and
    availability windows go (SPEC §7): ``paused`` while the project or the environment is
    paused (a pause wins over windows), ``outside_window`` while the windows forbid starts,
    else None. Reads only; call it inside the schedule's transaction.
    """
    if pause_state(project, now) is not None or pause_state(env, now) is not None:
        return SkipReason.PAUSED
    if window_hold(repo, env.id, now) is not None:
        return SkipReason.OUTSIDE_WINDOW
    return None


def show_environment(ctx: Context, project: str, environment: str) -> EnvironmentView:
    """Pauses in force at both levels, settings, windows (open now, next opening), queue."""
    now = ctx.clock.now()
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        state = window_state(windows_of(repo, env.id), now)
        project_pause = _in_force(prow, project, None, now)
        env_pause = _in_force(env, project, environment, now)
        rows = repo.active_rows(env)
        view = EnvironmentView(
            project=project,
            name=environment,
            at=now,
            settings=settings_of(env),
            launched=env.launched,
            project_pause=project_pause,
            environment_pause=env_pause,
            windows=window_models(repo, project, environment, env.id, now),
            windows_open=state.open,
            window_hold=state.reason,
            blocking_window_id=state.blocking.id if state.blocking else None,
            next_opening=state.next_opening,
            open_until=state.open_until,
            can_start=state.open and project_pause is None and env_pause is None,
        )
    queued = [r.id for r in rows if r.status == ReleaseStatus.QUEUED]
    # The first queued release not yet handed to a worker is the one the policy holds.
    waiting = [r.id for r in rows if r.status == ReleaseStatus.QUEUED and r.dispatched_at is None]
    holds = explain(ctx, project, environment) if waiting else {}
    queue = QueueSummary(
        running=[r.id for r in rows if r.status == ReleaseStatus.RUNNING],
        queued=queued,
        pending_approval=[r.id for r in rows if r.status == ReleaseStatus.PENDING_APPROVAL],
        next_holds=holds.get(waiting[0], []) if waiting else [],
    )
    return view.model_copy(update={"queue": queue})
