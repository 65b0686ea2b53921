"""Schedule fire times: when a recurring release is due (SPEC §7, §11).

A schedule has an anchor ``start_at`` and an interval given as ``--every <n><m|h|d|w>``. Its
fire times are ``fire_time(k)`` for integers ``k >= 0``:

- minutes and hours are absolute durations: ``start_at + k * interval``;
- days and weeks are calendar steps on the wall clock of the schedule's IANA timezone: the
  local wall time of ``start_at`` is kept, only the local date moves (``k * n`` days or
  ``k * n * 7`` days). A daily 02:00 Europe/Berlin schedule stays at 02:00 local across
  DST. A wall time that does not exist (clocks spring forward) moves forward by the gap
  (02:30 becomes 03:30); an ambiguous one (clocks fall back) is its first occurrence
  (``fold=0``). ``fire_time(k=0)`` is always ``start_at`` itself.

No fire time precedes ``start_at``. Pure code: no clock is read; every datetime argument
must be timezone-aware (``ValueError`` otherwise) and every datetime returned is aware, in
UTC. Minute and hour schedules are computed in O(1); day and week schedules compute ``k``
by dividing local wall-clock differences and then correct it by at most a step or two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..domain.enums import StrEnum

__all__ = [
    "MAX_INTERVAL",
    "Interval",
    "IntervalUnit",
    "due_fire",
    "fire_index_at_or_before",
    "fire_time",
    "first_fire",
    "next_fire_after",
    "next_fires",
    "parse_every",
]

UTC = timezone.utc

#: The longest accepted interval (about 100 years).
MAX_INTERVAL = timedelta(days=36525)

_EVERY_RE = re.compile(r"([0-9]+)([mhdw])")


class IntervalUnit(StrEnum):
    """The unit of an ``--every`` interval."""

    MINUTES = "m"
    HOURS = "h"
    DAYS = "d"
    WEEKS = "w"


_UNIT_DELTA = {
    IntervalUnit.MINUTES: timedelta(minutes=1),
    IntervalUnit.HOURS: timedelta(hours=1),
    IntervalUnit.DAYS: timedelta(days=1),
    IntervalUnit.WEEKS: timedelta(weeks=1),
}


@dataclass(frozen=True)
class Interval:
    """A schedule interval such as ``15m`` or ``2w``; ``str()`` gives that form back."""

    value: int
    unit: IntervalUnit

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value <= 0:
            raise ValueError(f"interval value must be a positive integer, got {self.value!r}")
        try:
            unit = IntervalUnit(self.unit)
        except ValueError:
            raise ValueError(
                f"interval unit must be one of m, h, d, w, got {self.unit!r}"
            ) from None
        object.__setattr__(self, "unit", unit)
        if self.value * _UNIT_DELTA[unit].total_seconds() > MAX_INTERVAL.total_seconds():
            raise ValueError(f"interval must be at most {MAX_INTERVAL.days} days, got {self}")

    def __str__(self) -> str:
        return f"{self.value}{self.unit.value}"

    @property
    def is_calendar(self) -> bool:
        """True for days and weeks (steps on the local calendar, not fixed durations)."""
        return self.unit in (IntervalUnit.DAYS, IntervalUnit.WEEKS)

    @property
    def nominal(self) -> timedelta:
        """The interval as a duration (exact for m/h; 24h days otherwise)."""
        return self.value * _UNIT_DELTA[self.unit]


def parse_every(text: str) -> Interval:
    """Parse ``--every``: ``<positive integer><m|h|d|w>``, e.g. ``15m``, ``2h``, ``1d``, ``1w``.

    Raises ``ValueError("--every must be <positive integer><m|h|d|w>, got '0m'")`` for
    ``0m``, ``5x``, ``""``, ``-1h``, ``1.5h``, ``m`` and the like.
    """
    match = _EVERY_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"--every must be <positive integer><m|h|d|w>, got '{text}'")
    value, unit = int(match.group(1)), IntervalUnit(match.group(2))
    if value * _UNIT_DELTA[unit].total_seconds() > MAX_INTERVAL.total_seconds():
        raise ValueError(f"--every must be at most {MAX_INTERVAL.days} days, got '{text}'")
    return Interval(value, unit)


# --------------------------------------------------------------------------- helpers


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"unknown timezone '{name}'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown timezone '{name}'") from None


def _check_interval(interval: Interval) -> None:
    if not isinstance(interval, Interval):
        raise ValueError(f"interval must be an Interval, got {type(interval).__name__}")


def _step_days(interval: Interval) -> int:
    return interval.value * (7 if interval.unit is IntervalUnit.WEEKS else 1)


def _fire(start_at: datetime, interval: Interval, k: int, zone: ZoneInfo) -> datetime:
    """``fire_time`` without argument checks; ``start_at`` already in UTC."""
    if k == 0:
        return start_at
    if not interval.is_calendar:
        return start_at + k * interval.nominal
    wall = start_at.astimezone(zone).replace(tzinfo=None, fold=0)
    target = wall + timedelta(days=k * _step_days(interval))
    # fold=0: a nonexistent wall time maps forward by the gap, an ambiguous one to its first
    # occurrence (PEP 495 semantics of zoneinfo).
    return target.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _floor_index(start_at: datetime, interval: Interval, x: datetime, zone: ZoneInfo) -> int:
    """The largest integer ``k`` (possibly negative) with ``_fire(k) <= x``."""
    if not interval.is_calendar:
        return (x - start_at) // interval.nominal
    wall_start = start_at.astimezone(zone).replace(tzinfo=None)
    wall_x = x.astimezone(zone).replace(tzinfo=None)
    k: int = (wall_x - wall_start) // timedelta(days=_step_days(interval))
    # Offsets differ by hours at most while a step is at least a day: one or two corrections.
    while _fire(start_at, interval, k, zone) > x:
        k -= 1
    while _fire(start_at, interval, k + 1, zone) <= x:
        k += 1
    return k


def _prepare(start_at: datetime, interval: Interval, tz: str) -> tuple[datetime, ZoneInfo]:
    _require_aware(start_at, "start_at")
    _check_interval(interval)
    return start_at.astimezone(UTC), _zone(tz)


def _first_index(
    start: datetime, interval: Interval, x: datetime, zone: ZoneInfo, strict: bool
) -> int:
    """The smallest ``k >= 0`` with ``fire(k) > x`` (strict) or ``fire(k) >= x``."""
    if x < start:
        return 0
    k = _floor_index(start, interval, x, zone)
    if not strict and _fire(start, interval, k, zone) == x:
        return k
    k += 1
    while _fire(start, interval, k, zone) <= x:  # only for zones that skip whole days
        k += 1
    return k


# --------------------------------------------------------------------------- public API


def fire_time(start_at: datetime, interval: Interval, k: int, tz: str = "UTC") -> datetime:
    """The ``k``-th fire time ``start_at + k * interval`` in UTC (see the module docstring).

    ``k`` may be any integer (negative values give times before the anchor, which are not
    fire times of the schedule but are well defined); ``k == 0`` is ``start_at``.
    """
    start, zone = _prepare(start_at, interval, tz)
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k must be an integer, got {k!r}")
    return _fire(start, interval, k, zone)


def fire_index_at_or_before(
    start_at: datetime, interval: Interval, at: datetime, tz: str = "UTC"
) -> int | None:
    """The index ``k >= 0`` of the latest fire time ``<= at``, or None if ``at < start_at``."""
    start, zone = _prepare(start_at, interval, tz)
    _require_aware(at, "at")
    at = at.astimezone(UTC)
    return None if at < start else _floor_index(start, interval, at, zone)


def first_fire(
    start_at: datetime, interval: Interval, set_at: datetime, tz: str = "UTC"
) -> datetime:
    """The first fire time of a schedule created (or changed) at ``set_at``.

    ``start_at`` itself when it is not in the past (``start_at >= set_at``); otherwise the
    first ``start_at + k * interval`` at or after ``set_at``.
    """
    start, zone = _prepare(start_at, interval, tz)
    _require_aware(set_at, "set_at")
    k = _first_index(start, interval, set_at.astimezone(UTC), zone, strict=False)
    return _fire(start, interval, k, zone)


def next_fire_after(
    start_at: datetime, interval: Interval, after: datetime, tz: str = "UTC"
) -> datetime:
    """The smallest fire time strictly after ``after`` (``start_at`` if ``after < start_at``)."""
    start, zone = _prepare(start_at, interval, tz)
    _require_aware(after, "after")
    k = _first_index(start, interval, after.astimezone(UTC), zone, strict=True)
    return _fire(start, interval, k, zone)


def next_fires(
    start_at: datetime,
    interval: Interval,
    after: datetime,
    n: int,
    tz: str = "UTC",
    *,
    inclusive: bool = False,
) -> list[datetime]:
    """The ``n`` next fire times after ``after``, in increasing order.

    Exclusive by default (every time is ``> after``, the first being
    :func:`next_fire_after`). With ``inclusive=True`` times ``>= after`` count, so the first
    is exactly :func:`first_fire` with ``set_at=after``: ``relo schedule show`` can call
    ``next_fires(start_at, interval, now, 5, tz, inclusive=True)``.
    """
    start, zone = _prepare(start_at, interval, tz)
    _require_aware(after, "after")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    k = _first_index(start, interval, after.astimezone(UTC), zone, strict=not inclusive)
    result: list[datetime] = []
    while len(result) < n:
        t = _fire(start, interval, k, zone)
        if not result or t > result[-1]:  # zones that skip a whole day can repeat an instant
            result.append(t)
        k += 1
    return result


def due_fire(
    start_at: datetime,
    interval: Interval,
    next_run_at: datetime,
    now: datetime,
    tz: str = "UTC",
) -> tuple[datetime | None, datetime]:
    """Decide what a beat tick at ``now`` must run; returns ``(due, new_next_run_at)``.

    ``next_run_at`` is the stored next due time. When ``now < next_run_at`` nothing is due:
    ``(None, next_run_at)``. Otherwise every fire time missed since ``next_run_at`` collapses
    into ONE run: ``due`` is the latest fire time ``t`` with ``next_run_at <= t <= now``, and
    the new next due time is the first fire time strictly after ``now``. If no fire time lies
    in ``[next_run_at, now]`` (a stored value that is not a fire time, e.g. after the
    schedule was edited), ``due`` is None and the next due time is still recomputed.
    """
    start, zone = _prepare(start_at, interval, tz)
    _require_aware(next_run_at, "next_run_at")
    _require_aware(now, "now")
    next_run_at, now = next_run_at.astimezone(UTC), now.astimezone(UTC)
    if now < next_run_at:
        return None, next_run_at
    due: datetime | None = None
    if now >= start:
        latest = _fire(start, interval, _floor_index(start, interval, now, zone), zone)
        if latest >= next_run_at:
            due = latest
    k = _first_index(start, interval, now, zone, strict=True)
    return due, _fire(start, interval, k, zone)
