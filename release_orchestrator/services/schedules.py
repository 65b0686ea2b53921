"""Scheduled releases (SPEC §7, §11): schedules in the database, fired by a beat tick.

Design: one short periodic tick task, not a database-backed beat scheduler
--------------------------------------------------------------------------
Celery beat only sends ``release_orchestrator.scheduled_tick`` every ``RELO_SCHEDULE_TICK``
seconds (default 5) to ``relo.control``; whichever worker takes the message runs :func:`tick`,
which reads the schedules whose ``next_run_at`` has passed and claims each due time in the
database. The alternatives were considered and rejected:

- **celery-redbeat** keeps entries in Redis and prevents a second beat with a leader lock
  (``redbeat::lock``, a TTL key extended every tick). Correctness then rests on the lock: a
  beat that loses it while paused (GC, a laptop lid, a network split) or whose lock key
  disappears in a Redis failover keeps sending until its next extend fails, and earlier
  releases swallowed lock-acquisition errors and scheduled anyway (redbeat#127, #163, #208,
  #218). The lock is also a second source of truth next to our SQL rows, and the duplicate
  it fails to prevent would be a whole extra release.
- **SQLAlchemy / django-celery-beat style schedulers** load the rows into beat's in-memory
  heap and notice edits through a "changed" marker at sync time; they write ``last_run_at``
  back without any compare-and-set, so two beats each send every entry (celery#2856), and
  "every 2 weeks from an anchor" or "skip when busy, with the reason recorded" would have
  to be squeezed into celery schedule classes.

Here beat is stateless (``celery.beat:Scheduler``, no shelve file, no lock): the database
row is the only state. A due time is claimed by ``UPDATE schedules SET next_run_at=:next
WHERE id=:id AND next_run_at=:seen`` in the same transaction that records the release (or
the ``skipped`` release) for it, and ``releases(schedule_id, due_at)`` is UNIQUE as a second
fence. So a second beat, a duplicated tick message or two workers ticking at once cost one
extra cheap query each and never a second release; a crash between claim and record loses
nothing because both commit together. Edits apply at the next tick without restarting beat,
since every tick reads the rows. The price is firing granularity: a release is submitted up
to one tick (plus queue latency) after its due time, which suits minute-scale schedules.

Transactions take the environment's row lock first (as :func:`releases.submit` does), then
touch the schedule row, so admission decisions and schedule changes never deadlock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete as sql_delete
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import ReleaseStatus, ReleaseType, SkipReason, Trigger
from ..domain.models import Schedule, ScheduledRun, ScheduleView
from ..errors import InvalidRequest, NotFound
from ..policy.schedule import (
    Interval,
    due_fire,
    fire_index_at_or_before,
    first_fire,
    next_fires,
    parse_every,
)
from ..storage.repository import Repository
from ..storage.tables import EnvironmentRow, ProjectRow, ReleaseRow, ScheduleRow
from .context import Context
from .dispatch import Dispatch, decide_and_mark, send
from .snapshot import is_busy, pause_state, window_hold

log = logging.getLogger(__name__)

#: Who submits scheduled releases (``triggered_by``) and acts in their audit events.
ACTOR = "schedule"
#: Release types a schedule may run: repeatable and complete without further arguments
#: (selective needs targets, launch runs once, destroy needs --allow-destroy).
SCHEDULABLE = (ReleaseType.FULL,)
#: Fire times shown by ``relo schedule show``.
SHOW_NEXT = 3

# -------------------------------------------------------------------------- input parsing


def check_timezone(name: str) -> str:
    """``name`` when it is an IANA timezone, else :class:`InvalidRequest`."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise InvalidRequest(f"--timezone: unknown timezone '{name}' (e.g. UTC, Europe/Berlin)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRequest(
            f"--timezone: unknown timezone '{name}' (e.g. UTC, Europe/Berlin)"
        ) from None
    return name


def parse_interval(every: str) -> Interval:
    """``--every`` as an :class:`Interval`; :class:`InvalidRequest` when malformed."""
    try:
        return parse_every(every)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def parse_start_at(value: str | datetime, tz: str) -> datetime:
    """An ISO 8601 time; without an offset it is a wall time in ``tz``. Returns aware UTC."""
    if isinstance(value, datetime):
        when = value
    else:
        text = value.strip() if isinstance(value, str) else ""
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRequest(
                f"--start-at must be an ISO 8601 time such as 2026-01-05T02:00:00+01:00, "
                f"got '{value}'"
            ) from None
    if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
        when = when.replace(tzinfo=ZoneInfo(tz), fold=0)
    try:
        return when.astimezone(ZoneInfo("UTC"))
    except OverflowError:
        raise InvalidRequest(f"--start-at is out of range: '{value}'") from None


def parse_type(value: ReleaseType | str) -> ReleaseType:
    try:
        rtype = ReleaseType(value)
    except ValueError:
        raise InvalidRequest(
            f"--type: unknown release type '{value}'; schedules run: "
            + ", ".join(t.value for t in SCHEDULABLE)
        ) from None
    if rtype not in SCHEDULABLE:
        raise InvalidRequest(
            f"--type {rtype}: a schedule cannot run {rtype} releases; schedules run: "
            + ", ".join(t.value for t in SCHEDULABLE)
        )
    return rtype


# -------------------------------------------------------------------------- use cases


def set_schedule(
    ctx: Context,
    project: str,
    environment: str,
    every: str,
    *,
    type: ReleaseType | str = ReleaseType.FULL,
    start_at: str | datetime | None = None,
    timezone: str = "UTC",
    paused: bool = False,
) -> ScheduleView:
    """Create or replace the schedule of an environment; it applies at the next beat tick.

    Every setting is replaced, except that an omitted ``start_at`` keeps the anchor of an
    existing schedule (a new one is anchored at the next whole minute). The first fire is
    ``start_at`` when it is in the future, else the first ``start_at + k * every`` at or after
    now (SPEC §11). All input is checked before anything is written.
    """
    interval = parse_interval(every)
    rtype = parse_type(type)
    tz = check_timezone(timezone)
    anchor = parse_start_at(start_at, tz) if start_at is not None else None
    now = ctx.clock.now()
    actor = ctx.actor
    with ctx.db.session() as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment, lock=True)
        row = _schedule_row(s, env.id)
        if anchor is None:
            anchor = (
                row.start_at
                if row is not None
                else now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            )
        try:  # the first fires must be representable (not beyond year 9999)
            next_run_at, *_ = next_fires(anchor, interval, now, SHOW_NEXT + 1, tz, inclusive=True)
        except (ValueError, OverflowError):
            raise InvalidRequest(
                f"--start-at {anchor.isoformat()} with --every {interval}: fire times fall "
                "beyond year 9999"
            ) from None
        created = row is None
        if row is None:
            row = ScheduleRow(environment_id=env.id, created_by=actor, created_at=now)
            s.add(row)
        before = None if created else _settings_of(row)
        row.every = str(interval)
        row.start_at = anchor
        row.timezone = tz
        row.release_type = str(rtype)
        row.paused = paused
        row.next_run_at = next_run_at
        row.updated_at = now
        s.flush()
        after = _settings_of(row)
        repo.event(
            at=now,
            actor=actor,
            kind="schedule_set",
            project=prow.name,
            environment=env.name,
            message=(
                f"schedule {'created' if created else 'changed'} by {actor}: {rtype} release "
                f"every {interval} from {anchor.isoformat()} ({tz})"
                + (", paused" if paused else "")
                + f"; next fire {next_run_at.isoformat()}"
            ),
            data={"before": before, "after": after, "next_run_at": next_run_at.isoformat()},
        )
        return _view(s, prow, env, row, now)


def show(ctx: Context, project: str, environment: str, *, limit: int = 10) -> ScheduleView:
    """The schedule, its next fire times and its last ``limit`` fires and skips."""
    if limit < 1:
        raise InvalidRequest("--limit must be at least 1")
    now = ctx.clock.now()
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        row = _require_schedule(s, prow, env)
        return _view(s, prow, env, row, now, limit=limit)


def set_paused(ctx: Context, project: str, environment: str, paused: bool) -> ScheduleView:
    """Pause or resume a schedule (a no-op when already so; changes are audited).

    A paused schedule still passes its due times: each is recorded as a ``skipped`` release
    with reason ``schedule_paused``, so the history shows what did not run.
    """
    now = ctx.clock.now()
    actor = ctx.actor
    with ctx.db.session() as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment, lock=True)
        row = _require_schedule(s, prow, env)
        if row.paused != paused:
            row.paused = paused
            row.updated_at = now
            kind = "schedule_paused" if paused else "schedule_resumed"
            repo.event(
                at=now,
                actor=actor,
                kind=kind,
                project=prow.name,
                environment=env.name,
                message=f"schedule {'paused' if paused else 'resumed'} by {actor}",
            )
        return _view(s, prow, env, row, now)


def delete(ctx: Context, project: str, environment: str) -> Schedule:
    """Remove an environment's schedule; its past fires and skips stay in the history."""
    now = ctx.clock.now()
    actor = ctx.actor
    with ctx.db.session() as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment, lock=True)
        row = _require_schedule(s, prow, env)
        gone = _schedule_of(prow, env, row)
        s.execute(sql_delete(ScheduleRow).where(ScheduleRow.id == row.id))
        repo.event(
            at=now,
            actor=actor,
            kind="schedule_deleted",
            project=prow.name,
            environment=env.name,
            message=f"schedule (every {row.every}) deleted by {actor}",
            data={"before": _settings_of(row)},
        )
        return gone


# -------------------------------------------------------------------------- the tick


@dataclass(frozen=True)
class FireOutcome:
    """What claiming one schedule did.

    ``kind``: ``fired`` (a release was submitted), ``skipped`` (a skipped release recorded),
    ``advanced`` (``next_run_at`` moved but no new due time: it was already recorded, or the
    stored time was not a fire time), ``not_due``, ``lost_race`` (another tick claimed it
    first) or ``gone`` (the schedule was deleted meanwhile).
    """

    kind: Literal["fired", "skipped", "advanced", "not_due", "lost_race", "gone"]
    release_id: int | None = None
    due_at: datetime | None = None
    skip_reason: SkipReason | None = None
    collapsed: int = 0


_STAT = {
    "fired": "schedule_fired",
    "skipped": "schedule_skipped",
    "advanced": "schedule_advanced",
    "not_due": "schedule_not_due",
    "lost_race": "schedule_lost_race",
    "gone": "schedule_gone",
}


def due_schedules(ctx: Context, now: datetime) -> list[tuple[int, datetime]]:
    """``(schedule id, next_run_at)`` of every schedule due at ``now``, earliest first."""
    with ctx.db.session(write=False) as s:
        rows = s.execute(
            select(ScheduleRow.id, ScheduleRow.next_run_at)
            .where(ScheduleRow.next_run_at <= now)
            .order_by(ScheduleRow.next_run_at, ScheduleRow.id)
        )
        return [(r[0], r[1]) for r in rows]


def tick(ctx: Context) -> dict[str, int]:
    """Claim every due schedule once: submit its release or record the skip.

    Safe to run concurrently from any number of beats and workers (see the module docstring).
    A schedule that fails is logged and counted; the others still fire. Returns counters:
    ``schedules_due`` and ``schedule_<outcome>`` per :class:`FireOutcome` kind, plus
    ``schedule_errors``.
    """
    stats = {"schedules_due": 0, "schedule_errors": 0, **{v: 0 for v in _STAT.values()}}
    for schedule_id, seen in due_schedules(ctx, ctx.clock.now()):
        stats["schedules_due"] += 1
        try:
            outcome = claim(ctx, schedule_id, seen)
        except Exception:
            log.exception("schedule %s: firing failed; retried at the next tick", schedule_id)
            stats["schedule_errors"] += 1
            continue
        stats[_STAT[outcome.kind]] += 1
    return stats


def claim(
    ctx: Context, schedule_id: int, seen: datetime, now: datetime | None = None
) -> FireOutcome:
    """Claim the due time of one schedule whose ``next_run_at`` was read as ``seen``.

    In ONE transaction: compare-and-set ``next_run_at`` from ``seen`` to the next fire time
    after ``now``, and record the due time (missed fires collapse into the latest one) as a
    submitted release or a ``skipped`` one. If another tick moved ``next_run_at`` first, or
    recorded this due time first (UNIQUE ``schedule_id, due_at``), nothing is recorded.
    A submitted release is published to its queue after commit.
    """
    now = now or ctx.clock.now()
    dispatches: list[Dispatch] = []
    try:
        with ctx.db.session() as s:
            outcome, dispatches = _claim_in(ctx, s, schedule_id, seen, now)
    except IntegrityError:
        # Another transaction recorded this (schedule, due time) first: nothing to do.
        return FireOutcome("lost_race")
    send(ctx, dispatches)
    return outcome


def _claim_in(
    ctx: Context, s: Session, schedule_id: int, seen: datetime, now: datetime
) -> tuple[FireOutcome, list[Dispatch]]:
    repo = Repository(s)
    env_id = s.scalar(select(ScheduleRow.environment_id).where(ScheduleRow.id == schedule_id))
    if env_id is None:
        return FireOutcome("gone"), []
    project, env = repo.environment_by_id(env_id, lock=True)
    row = s.scalar(
        select(ScheduleRow)
        .where(ScheduleRow.id == schedule_id)
        .execution_options(populate_existing=True)
    )
    if row is None:
        return FireOutcome("gone"), []
    if row.next_run_at != seen:
        return FireOutcome("lost_race"), []
    interval = parse_every(row.every)
    due, next_at = due_fire(row.start_at, interval, seen, now, row.timezone)
    if due is None and next_at == seen:
        return FireOutcome("not_due"), []
    moved = s.execute(
        update(ScheduleRow)
        .where(ScheduleRow.id == schedule_id, ScheduleRow.next_run_at == seen)
        .values(next_run_at=next_at)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        return FireOutcome("lost_race"), []
    if due is None or _recorded(s, schedule_id, due):
        return FireOutcome("advanced", due_at=due), []
    collapsed = _missed_before(row, interval, seen, due)
    reason, detail = _skip_reason(repo, project, env, row, now)
    if reason is not None:
        release_id = _record_skip(repo, project, env, row, due, now, reason, detail, collapsed)
        return FireOutcome("skipped", release_id, due, reason, collapsed), []
    release_id, dispatches = _record_fire(ctx, repo, project, env, row, due, now, collapsed)
    return FireOutcome("fired", release_id, due, None, collapsed), dispatches


def _record_skip(
    repo: Repository,
    project: ProjectRow,
    env: EnvironmentRow,
    row: ScheduleRow,
    due: datetime,
    now: datetime,
    reason: SkipReason,
    detail: str,
    collapsed: int,
) -> int:
    """A ``skipped`` release for the due time, finished at once, and its audit event."""
    release = repo.add_release(
        _release_row(
            env,
            row,
            due,
            now,
            status=str(ReleaseStatus.SKIPPED),
            finished_at=now,
            skip_reason=str(reason),
            error=detail,
        )
    )
    repo.event(
        at=now,
        actor=ACTOR,
        kind="skipped",
        project=project.name,
        environment=env.name,
        release_id=release.id,
        message=(
            f"scheduled {row.release_type} release {release.id} due {due.isoformat()} "
            f"skipped: {detail}" + _collapsed_text(collapsed)
        ),
        data=_event_data(row, due, collapsed, reason=str(reason)),
    )
    return release.id


def _record_fire(
    ctx: Context,
    repo: Repository,
    project: ProjectRow,
    env: EnvironmentRow,
    row: ScheduleRow,
    due: datetime,
    now: datetime,
    collapsed: int,
) -> tuple[int, list[Dispatch]]:
    """Submit the scheduled release as :func:`releases.submit` would, inside the claim."""
    status = ReleaseStatus.PENDING_APPROVAL if env.approval_required else ReleaseStatus.QUEUED
    queued = status is ReleaseStatus.QUEUED
    release = repo.add_release(
        _release_row(
            env,
            row,
            due,
            now,
            status=str(status),
            queue_seq=repo.next_queue_seq(env) if queued else None,
        )
    )
    repo.event(
        at=now,
        actor=ACTOR,
        kind="submitted",
        project=project.name,
        environment=env.name,
        release_id=release.id,
        message=(
            f"{row.release_type} release {release.id} submitted by schedule "
            f"(due {due.isoformat()}, {status})" + _collapsed_text(collapsed)
        ),
        data={
            "type": row.release_type,
            "trigger": str(Trigger.SCHEDULE),
            "targets": [],
            **_event_data(row, due, collapsed),
        },
    )
    if not queued:
        return release.id, []
    _, dispatches = decide_and_mark(ctx, repo, project, env, now)
    return release.id, dispatches


def _release_row(
    env: EnvironmentRow, schedule: ScheduleRow, due: datetime, now: datetime, **values: Any
) -> ReleaseRow:
    return ReleaseRow(
        environment_id=env.id,
        type=schedule.release_type,
        refresh=False,
        force=False,
        allow_destroy=False,
        no_rollback=False,
        comment=f"schedule every {schedule.every}, due {due.isoformat()}",
        triggered_by=ACTOR,
        trigger=str(Trigger.SCHEDULE),
        targets=[],
        extra_args=[],
        extra_vars={},
        created_at=now,
        dispatch_count=0,
        schedule_id=schedule.id,
        due_at=due,
        **values,
    )


def _skip_reason(
    repo: Repository,
    project: ProjectRow,
    env: EnvironmentRow,
    schedule: ScheduleRow,
    now: datetime,
) -> tuple[SkipReason | None, str]:
    """Why the due time must be skipped (SPEC §7 order), with a sentence; (None, "") to fire."""
    for row, scope in ((project, f"project '{project.name}'"), (env, "environment")):
        pause = pause_state(row, now)
        if pause is not None:
            why = f": {pause.reason}" if pause.reason else ""
            until = f" until {pause.until.isoformat()}" if pause.until else ""
            return (
                SkipReason.PAUSED,
                f"{scope} paused by {pause.by} since {pause.at.isoformat()}{until}{why}",
            )
    if schedule.paused:
        return SkipReason.SCHEDULE_PAUSED, "the schedule is paused (relo schedule resume)"
    hold = window_hold(repo, env.id, now)
    if hold is not None:
        opening = f"; next opening {hold.next_opening.isoformat()}" if hold.next_opening else ""
        return SkipReason.OUTSIDE_WINDOW, f"outside the availability windows{opening}"
    if is_busy(repo, env.id):
        busy = [
            f"release {r.id} {r.status}"
            for r in repo.active_rows(env)
            if r.status in (ReleaseStatus.RUNNING, ReleaseStatus.QUEUED)
        ]
        return SkipReason.BUSY, "environment busy: " + ", ".join(busy)
    return None, ""


def _missed_before(row: ScheduleRow, interval: Interval, seen: datetime, due: datetime) -> int:
    """How many earlier fire times (from ``seen`` on) collapsed into ``due``."""
    k_due = fire_index_at_or_before(row.start_at, interval, due, row.timezone)
    first = first_fire(row.start_at, interval, seen, row.timezone)
    k_first = fire_index_at_or_before(row.start_at, interval, first, row.timezone)
    if k_due is None or k_first is None:
        return 0
    return max(0, k_due - k_first)


def _collapsed_text(collapsed: int) -> str:
    if not collapsed:
        return ""
    return f"; {collapsed} earlier missed due time(s) collapsed into this one"


def _event_data(
    row: ScheduleRow, due: datetime, collapsed: int, reason: str | None = None
) -> dict[str, object]:
    data: dict[str, object] = {
        "schedule_id": row.id,
        "every": row.every,
        "due_at": due.isoformat(),
        "collapsed": collapsed,
    }
    if reason is not None:
        data["reason"] = reason
    return data


# -------------------------------------------------------------------------- queries
# The schedule's SQL lives here, beside its only user, until storage grows a schedule
# section of the repository; rows never leave this module (callers get domain models).


def _schedule_row(s: Session, env_id: int) -> ScheduleRow | None:
    return s.scalar(select(ScheduleRow).where(ScheduleRow.environment_id == env_id))


def _require_schedule(s: Session, project: ProjectRow, env: EnvironmentRow) -> ScheduleRow:
    row = _schedule_row(s, env.id)
    if row is not None:
        return row
    others = list(
        s.scalars(
            select(EnvironmentRow.name)
            .join(ScheduleRow, ScheduleRow.environment_id == EnvironmentRow.id)
            .where(EnvironmentRow.project_id == project.id)
            .order_by(EnvironmentRow.name)
        )
    )
    where = f"{project.name}/{env.name}"
    listing = ", ".join(f"{project.name}/{n}" for n in others[:20]) or "none in this project"
    raise NotFound(
        f"environment '{where}' has no schedule (schedules: {listing}); "
        f"create one with: relo schedule set -p {project.name} -e {env.name} --every 1d",
        kind="schedule",
        name=where,
        existing=others[:20],
    )


def _recorded(s: Session, schedule_id: int, due: datetime) -> bool:
    found = s.scalar(
        select(ReleaseRow.id).where(ReleaseRow.schedule_id == schedule_id, ReleaseRow.due_at == due)
    )
    return found is not None


def _recent_runs(s: Session, env_id: int, limit: int) -> list[ScheduledRun]:
    rows = s.scalars(
        select(ReleaseRow)
        .where(
            ReleaseRow.environment_id == env_id,
            ReleaseRow.trigger == str(Trigger.SCHEDULE),
            ReleaseRow.due_at.is_not(None),
        )
        .order_by(ReleaseRow.id.desc())
        .limit(limit)
    )
    return [
        ScheduledRun(
            release_id=r.id,
            due_at=r.due_at,
            recorded_at=r.created_at,
            type=ReleaseType(r.type),
            status=ReleaseStatus(r.status),
            skip_reason=SkipReason(r.skip_reason) if r.skip_reason else None,
            detail=r.error,
        )
        for r in rows
        if r.due_at is not None
    ]


def _schedule_of(project: ProjectRow, env: EnvironmentRow, row: ScheduleRow) -> Schedule:
    return Schedule(
        id=row.id,
        project=project.name,
        environment=env.name,
        every=row.every,
        type=ReleaseType(row.release_type),
        start_at=row.start_at,
        timezone=row.timezone,
        paused=row.paused,
        next_run_at=row.next_run_at,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _settings_of(row: ScheduleRow) -> dict[str, object]:
    return {
        "every": row.every,
        "type": row.release_type,
        "start_at": row.start_at.isoformat(),
        "timezone": row.timezone,
        "paused": row.paused,
    }


def upcoming(row: ScheduleRow, now: datetime, n: int = SHOW_NEXT) -> list[datetime]:
    """The next ``n`` due times as the tick will see them.

    When ``next_run_at`` has passed (beat is behind or down), the first is the one due time
    the missed fires collapse into; the others follow ``now``.
    """
    interval = parse_every(row.every)
    if row.next_run_at >= now:
        return next_fires(row.start_at, interval, row.next_run_at, n, row.timezone, inclusive=True)
    due, _ = due_fire(row.start_at, interval, row.next_run_at, now, row.timezone)
    later = next_fires(row.start_at, interval, now, n, row.timezone)
    return [due, *later][:n] if due is not None else later


def _view(
    s: Session,
    project: ProjectRow,
    env: EnvironmentRow,
    row: ScheduleRow,
    now: datetime,
    *,
    limit: int = 10,
) -> ScheduleView:
    return ScheduleView(
        schedule=_schedule_of(project, env, row),
        next_fires=upcoming(row, now),
        recent=_recent_runs(s, env.id, limit),
    )
