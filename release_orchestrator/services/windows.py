"""Availability windows of an environment: add, list, remove (SPEC §4, §11).

The window arithmetic is pure (:mod:`release_orchestrator.policy.windows`); the admission
policy receives the result through the snapshot (``window_hold``). Here: validation, storage,
the audit event and the re-evaluation of the environment's queue after every change.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..domain.models import AvailabilityWindow
from ..errors import InvalidRequest, not_found
from ..policy.windows import (
    Window,
    WindowKind,
    current_opening,
    next_start,
    parse_duration,
)
from ..storage.repository import Repository
from ..storage.tables import WindowRow
from .context import Context
from .dispatch import evaluate


def format_duration(value: timedelta) -> str:
    """``2h``, ``1h30m``, ``1d``, ``45s``: the form ``--duration`` accepts."""
    total = int(value.total_seconds())
    if total <= 0 or total != value.total_seconds():
        return f"{value.total_seconds():g}s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            out += f"{count}{unit}"
    return out


def parse_window_duration(duration: str | timedelta) -> timedelta:
    """A positive duration from ``90m``/``2h``/``1h30m``/``1d`` (or a timedelta)."""
    if isinstance(duration, timedelta):
        if duration <= timedelta(0):
            raise InvalidRequest(
                f"invalid duration '{format_duration(duration)}': must be positive"
            )
        return duration
    try:
        return parse_duration(duration)
    except ValueError as exc:
        message = str(exc)
        if not message.startswith("invalid"):
            message = f"invalid duration '{duration}': {message}"
        raise InvalidRequest(message) from None


def build_window(
    kind: str, cron: str, duration: str | timedelta, timezone: str, window_id: int = 0
) -> Window:
    """A validated window definition; :class:`InvalidRequest` with a one-line message."""
    try:
        kind = WindowKind(kind)
    except ValueError:
        raise InvalidRequest(f"window kind must be allow or deny, got '{kind}'") from None
    value = parse_window_duration(duration)
    text = " ".join(str(cron).split())
    try:
        return Window(id=window_id, kind=kind, cron=text, duration=value, timezone=timezone)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _model(row: WindowRow, project: str, environment: str, now: datetime) -> AvailabilityWindow:
    window = Window(
        id=row.id,
        kind=WindowKind(row.kind),
        cron=row.cron,
        duration=timedelta(seconds=row.duration_s),
        timezone=row.timezone,
    )
    opening = current_opening(window, now)
    return AvailabilityWindow(
        id=row.id,
        project=project,
        environment=environment,
        kind=row.kind,
        cron=row.cron,
        duration=format_duration(window.duration),
        duration_s=row.duration_s,
        timezone=row.timezone,
        created_by=row.created_by,
        created_at=row.created_at,
        at=now,
        open_now=opening is not None,
        open_until=opening[1] if opening else None,
        next_start=next_start(window, now),
    )


def window_models(
    repo: Repository, project: str, environment: str, env_id: int, now: datetime
) -> list[AvailabilityWindow]:
    """The environment's windows, by id, each evaluated at ``now``."""
    return [_model(row, project, environment, now) for row in repo.windows(env_id)]


def add_window(
    ctx: Context,
    project: str,
    environment: str,
    *,
    kind: str,
    cron: str,
    duration: str | timedelta,
    timezone: str = "UTC",
) -> AvailabilityWindow:
    """Add an allow or deny window; records an event and re-evaluates the queue.

    Raises :class:`InvalidRequest` (nothing stored) for an unknown kind, a malformed or
    never-firing cron expression, a duration that is not positive, or an unknown timezone;
    :class:`NotFound` for an unknown project or environment.
    """
    window = build_window(kind, cron, duration, timezone)
    now = ctx.clock.now()
    actor = ctx.actor
    with ctx.db.session() as s:
        repo = Repository(s)
        _, env = repo.environment(project, environment, lock=True)
        row = WindowRow(
            environment_id=env.id,
            kind=str(window.kind),
            cron=window.cron,
            duration_s=window.duration.total_seconds(),
            timezone=window.timezone,
            created_by=actor,
            created_at=now,
        )
        s.add(row)
        s.flush()
        repo.event(
            at=now,
            actor=actor,
            kind="window_added",
            project=project,
            environment=environment,
            message=f"{window.kind} window {row.id} added by {actor}: '{window.cron}' for "
            f"{format_duration(window.duration)} ({window.timezone})",
            data={
                "window_id": row.id,
                "kind": str(window.kind),
                "cron": window.cron,
                "duration_s": row.duration_s,
                "timezone": window.timezone,
            },
        )
        result = _model(row, project, environment, now)
        env_id = env.id
    evaluate(ctx, env_id)
    return result


def windows(ctx: Context, project: str, environment: str) -> list[AvailabilityWindow]:
    """The environment's windows, each with whether it is open now and its next start."""
    now = ctx.clock.now()
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        _, env = repo.environment(project, environment)
        return window_models(repo, project, environment, env.id, now)


def remove_window(
    ctx: Context, project: str, environment: str, window_id: int
) -> AvailabilityWindow:
    """Remove one window; records an event and re-evaluates the queue (held releases start).

    Raises :class:`NotFound` naming the environment's window ids when ``window_id`` is not
    one of them (nothing changes).
    """
    now = ctx.clock.now()
    actor = ctx.actor
    with ctx.db.session() as s:
        repo = Repository(s)
        _, env = repo.environment(project, environment, lock=True)
        rows = repo.windows(env.id)
        row = next((r for r in rows if r.id == window_id), None)
        if row is None:
            raise not_found(
                "window",
                str(window_id),
                [str(r.id) for r in rows],
                where=f"environment '{project}/{environment}'",
            )
        result = _model(row, project, environment, now)
        s.delete(row)
        repo.event(
            at=now,
            actor=actor,
            kind="window_removed",
            project=project,
            environment=environment,
            message=f"{row.kind} window {row.id} ('{row.cron}' for "
            f"{result.duration}, {row.timezone}) removed by {actor}",
            data={"window_id": row.id, "kind": row.kind, "cron": row.cron},
        )
        env_id = env.id
    evaluate(ctx, env_id)
    return result
