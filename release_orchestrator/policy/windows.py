"""Availability windows: may a release start at a given instant (SPEC §4, §11).

A window is a recurring interval: a 5-field cron expression, evaluated on the wall clock of
the window's IANA timezone, names the instants at which an *occurrence* starts, and every
occurrence lasts ``duration`` (absolute elapsed time). An instant ``now`` is *inside* the
window when some fire time ``t`` has ``t <= now < t + duration``.

- ``allow`` windows: when an environment has at least one, releases start only while ``now``
  is inside one of them;
- ``deny`` windows: while ``now`` is inside one, releases do not start (deny wins over allow).

Pure code: no clock is read (``now`` is always an argument and must be timezone-aware), and
every datetime returned is timezone-aware in UTC.

Wall-clock semantics across daylight-saving transitions (this module, not croniter's
heuristics, defines them):

- a fire time is every instant whose local wall-clock reading matches the expression, so a
  wall time repeated when clocks fall back fires twice (once per occurrence; an hourly
  window therefore has no hole, and ``30 2 * * *`` covers both 02:30s);
- a matching wall time that does not exist (clocks spring forward) fires at that wall time
  shifted forward by the length of the gap (02:30 becomes 03:30 when 02:00 jumps to 03:00),
  which is also how :mod:`release_orchestrator.policy.schedule` treats missing wall times;
- durations are absolute: an 8-hour window that straddles a transition lasts 8 real hours.

Implementation: croniter is only used on naive wall-clock datetimes (where it has no DST
behaviour) to find the days an expression matches; the times of day of a matching day are
the product of the expanded hour and minute fields, and each is mapped to UTC with
:mod:`zoneinfo`. Per-day results are cached, so scanning forward or backward in time is cheap.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from ..domain.enums import StrEnum

__all__ = [
    "DEFAULT_HORIZON",
    "REASON_DENY_WINDOW",
    "REASON_OUTSIDE_ALLOW_WINDOW",
    "Window",
    "WindowKind",
    "WindowState",
    "current_opening",
    "is_inside",
    "next_start",
    "parse_duration",
    "previous_start",
    "upcoming_openings",
    "validate_window",
    "window_state",
]

UTC = timezone.utc

#: Reason codes of a closed :class:`WindowState` (the same strings as the admission policy).
REASON_DENY_WINDOW = "deny_window"
REASON_OUTSIDE_ALLOW_WINDOW = "outside_allow_window"

#: How far ahead :func:`window_state` looks for the next opening / the end of an opening.
DEFAULT_HORIZON = timedelta(days=366)

#: Upper bound on the candidate instants examined by one :func:`window_state` search.
_MAX_STEPS = 5000

_US = timedelta(microseconds=1)
_MINUTE_US = 60_000_000
_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_NAMES = "minute hour day-of-month month day-of-week"
# croniter extensions that are not deterministic (R = random, H = hashed): rejected.
_NONDETERMINISTIC = re.compile(r"(^|,)\s*[HR](?![A-Z])", re.IGNORECASE)
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class WindowKind(StrEnum):
    """Whether a window permits starts (``allow``) or forbids them (``deny``)."""

    ALLOW = "allow"
    DENY = "deny"


# --------------------------------------------------------------------------- validation


def _normalize_cron(cron: str) -> str:
    """Return the 5-field form of ``cron`` (aliases expanded) or raise ``ValueError``."""
    if not isinstance(cron, str):
        raise ValueError(f"invalid cron expression {cron!r}: not a string")
    text = " ".join(cron.split())
    text = _ALIASES.get(text.lower(), text)
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression '{cron}': expected 5 fields ({_FIELD_NAMES}), "
            f"got {len(fields)}"
        )
    if any(_NONDETERMINISTIC.search(field) for field in fields):
        raise ValueError(
            f"invalid cron expression '{cron}': random (R) and hashed (H) fields are not supported"
        )
    return text


@lru_cache(maxsize=1024)
def _compile(cron: str) -> tuple[str, tuple[int, ...]]:
    """Validate ``cron``; return its normalized text and its sorted minutes of the day.

    Raises ``ValueError`` for syntax errors and for expressions that never fire.
    """
    text = _normalize_cron(cron)
    try:
        itr = croniter(text, datetime(2000, 1, 1))
        minutes_field, hours_field = itr.expanded[0], itr.expanded[1]
        itr.get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"invalid cron expression '{cron}': it never fires") from None
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise ValueError(f"invalid cron expression '{cron}': {detail}") from None
    minutes = range(60) if "*" in minutes_field else sorted({int(m) for m in minutes_field})
    hours = range(24) if "*" in hours_field else sorted({int(h) for h in hours_field})
    return text, tuple(h * 60 + m for h in hours for m in minutes)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` called ``name``; ``ValueError`` when there is none."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"unknown timezone '{name}'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown timezone '{name}'") from None


def validate_window(cron: str, duration: timedelta, timezone: str) -> None:
    """Check a window definition; raise ``ValueError`` with a one-line message if invalid.

    Messages: ``invalid cron expression '61 * * * *': ...``, ``duration must be positive``,
    ``unknown timezone 'Mars/Base'``.
    """
    _compile(cron)
    if not isinstance(duration, timedelta):
        raise ValueError("duration must be a timedelta")
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    _zone(timezone)


def parse_duration(text: str) -> timedelta:
    """Parse a window duration such as ``90m``, ``2h``, ``1h30m``, ``45s`` or ``1d``.

    Units are ``d``, ``h``, ``m`` and ``s``, each at most once and in that order. The
    result must be positive: ``0m``, ``""``, ``-1h`` and ``5x`` raise ``ValueError``.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90m, 2h, 1h30m, 45s, 1d")
    match = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"invalid duration '{text}': expected e.g. 90m, 2h, 1h30m, 45s, 1d")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    try:
        value = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"invalid duration '{text}': too large") from None
    if value <= timedelta(0):
        raise ValueError("duration must be positive")
    return value


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Window:
    """One availability window of an environment.

    Construction validates the definition (see :func:`validate_window`); ``kind`` may be
    given as the plain string ``"allow"`` or ``"deny"``.
    """

    id: int
    kind: WindowKind
    cron: str
    duration: timedelta
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            kind = WindowKind(self.kind)
        except ValueError:
            raise ValueError(f"window kind must be 'allow' or 'deny', got '{self.kind}'") from None
        object.__setattr__(self, "kind", kind)
        validate_window(self.cron, self.duration, self.timezone)


@dataclass(frozen=True)
class WindowState:
    """Whether a release may start at one instant, as far as windows are concerned.

    - ``open``: a release may start now (pauses are not considered here);
    - ``blocking``: the deny window covering now (the first one in the given order), or None;
    - ``reason``: None when open, else ``"deny_window"`` or ``"outside_allow_window"``;
    - ``open_until``: set only when open *because of* allow windows: the first instant after
      now at which starts stop being permitted, i.e. the end of the continuous allow coverage
      (overlapping occurrences and windows merged) or the start of a deny window, whichever
      is first; None when there are no allow windows (open unless a deny window starts) or
      when no end was found within the search horizon;
    - ``next_opening``: set only when closed: the earliest instant ``>= now`` at which the
      state is open (deny windows overlapping allow windows respected); None if there is no
      such instant within the search horizon.
    """

    open: bool
    blocking: Window | None = None
    reason: str | None = None
    open_until: datetime | None = None
    next_opening: datetime | None = None


# --------------------------------------------------------------------------- time helpers


def _require_aware(value: datetime, name: str = "now") -> None:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


def _to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact integer)."""
    return (value.astimezone(UTC).replace(tzinfo=None) - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return (_EPOCH + timedelta(microseconds=us)).replace(tzinfo=UTC)


def _local_date(us: int, zone: tzinfo) -> date:
    return _from_us(us).astimezone(zone).date()


def _wall_to_us(wall: datetime, zone: tzinfo) -> tuple[int, ...]:
    """The instants (epoch microseconds) at which the naive ``wall`` time fires in ``zone``.

    Normally one; two for a wall time repeated by a fall-back transition; for a wall time
    skipped by a spring-forward gap, the wall time shifted forward by the gap (``fold=0``).
    """
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    a, b = _to_us(first), _to_us(second)
    if a == b:
        return (a,)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return (min(a, b), max(a, b))  # ambiguous: both occurrences exist
    return (max(a, b),)  # nonexistent: fold=0 maps it forward by the gap


# --------------------------------------------------------------------------- fire times


@lru_cache(maxsize=8192)
def _next_match_day(cron: str, day: date) -> date | None:
    """The first day ``>= day`` on which the (normalized) expression fires, if any."""
    try:
        start = datetime.combine(day, time()) - timedelta(minutes=1)
        found: datetime = croniter(cron, start).get_next(datetime)
    except (CroniterBadDateError, OverflowError, ValueError):
        return None
    return found.date()


@lru_cache(maxsize=8192)
def _prev_match_day(cron: str, day: date) -> date | None:
    """The last day ``<= day`` on which the (normalized) expression fires, if any."""
    try:
        start = datetime.combine(day, time()) + _DAY
        found: datetime = croniter(cron, start).get_prev(datetime)
    except (CroniterBadDateError, OverflowError, ValueError):
        return None
    return found.date()


@lru_cache(maxsize=512)
def _day_fires(cron: str, tz_name: str, day: date) -> tuple[int, ...]:
    """Sorted fire instants (epoch microseconds) of the wall-clock times on local ``day``."""
    if _next_match_day(cron, day) != day:
        return ()
    _, minutes = _compile(cron)
    zone = _zone(tz_name)
    midnight = datetime.combine(day, time())
    try:
        next_midnight = midnight + _DAY
    except OverflowError:  # pragma: no cover - 9999-12-31
        return ()
    offsets = {
        (moment.replace(tzinfo=zone, fold=fold)).utcoffset()
        for moment in (midnight, next_midnight)
        for fold in (0, 1)
    }
    if len(offsets) == 1:  # no transition on this day: one offset for every wall time
        base = _to_us(midnight.replace(tzinfo=zone))
        return tuple(base + m * _MINUTE_US for m in minutes)
    fires: set[int] = set()
    for m in minutes:
        fires.update(_wall_to_us(midnight + timedelta(minutes=m), zone))
    return tuple(sorted(fires))


def _max_le(cron: str, tz_name: str, days: Sequence[date], x: int) -> int | None:
    best: int | None = None
    for day in days:
        fires = _day_fires(cron, tz_name, day)
        i = bisect_right(fires, x)
        if i and (best is None or fires[i - 1] > best):
            best = fires[i - 1]
    return best


def _min_gt(cron: str, tz_name: str, days: Sequence[date], x: int) -> int | None:
    best: int | None = None
    for day in days:
        fires = _day_fires(cron, tz_name, day)
        i = bisect_right(fires, x)
        if i < len(fires) and (best is None or fires[i] < best):
            best = fires[i]
    return best


def _latest_le(cron: str, tz_name: str, x: int) -> int | None:
    """The latest fire instant ``<= x`` (epoch microseconds), or None.

    Wall times of the local days around ``x`` may map to either side of ``x`` (offsets,
    transitions near midnight), so those three days are examined together. Only when they
    have nothing does the search jump back to the last matching days before them.
    """
    center = _local_date(x, _zone(tz_name))
    best = _max_le(cron, tz_name, (center - _DAY, center, center + _DAY), x)
    if best is not None:
        return best
    last = _prev_match_day(cron, center - 2 * _DAY)
    if last is None:
        return None
    before = _prev_match_day(cron, last - _DAY)
    return _max_le(cron, tz_name, (last,) if before is None else (last, before), x)


def _earliest_gt(cron: str, tz_name: str, x: int) -> int | None:
    """The earliest fire instant ``> x`` (epoch microseconds), or None."""
    center = _local_date(x, _zone(tz_name))
    best = _min_gt(cron, tz_name, (center - _DAY, center, center + _DAY), x)
    if best is not None:
        return best
    first = _next_match_day(cron, center + 2 * _DAY)
    if first is None:
        return None
    after = _next_match_day(cron, first + _DAY)
    return _min_gt(cron, tz_name, (first,) if after is None else (first, after), x)


@dataclass(frozen=True)
class _Compiled:
    """A window reduced to what the time arithmetic needs."""

    window: Window
    cron: str
    tz_name: str
    duration_us: int

    @classmethod
    def of(cls, window: Window) -> _Compiled:
        text, _ = _compile(window.cron)
        return cls(window, text, window.timezone, window.duration // _US)

    def latest_start(self, x: int) -> int | None:
        return _latest_le(self.cron, self.tz_name, x)

    def next_start(self, x: int) -> int | None:
        return _earliest_gt(self.cron, self.tz_name, x)

    def covering_end(self, x: int) -> int | None:
        """End of the latest occurrence covering ``x``; None when ``x`` is outside."""
        start = self.latest_start(x)
        if start is None or x >= start + self.duration_us:
            return None
        return start + self.duration_us


# --------------------------------------------------------------------------- public API


def previous_start(window: Window, at: datetime) -> datetime | None:
    """The latest fire time ``<= at`` of ``window`` (UTC), or None if it never fired."""
    _require_aware(at, "at")
    found = _Compiled.of(window).latest_start(_to_us(at))
    return None if found is None else _from_us(found)


def next_start(window: Window, after: datetime) -> datetime | None:
    """The earliest fire time ``> after`` of ``window`` (UTC), or None if there is none."""
    _require_aware(after, "after")
    found = _Compiled.of(window).next_start(_to_us(after))
    return None if found is None else _from_us(found)


def is_inside(window: Window, now: datetime) -> bool:
    """True when some fire time ``t`` of ``window`` has ``t <= now < t + duration``.

    Only the latest fire time ``<= now`` needs checking: every occurrence lasts the same
    duration, so an earlier one cannot end later. Occurrences that started before midnight,
    or longer than the cron period, are therefore handled.
    """
    _require_aware(now)
    return _Compiled.of(window).covering_end(_to_us(now)) is not None


def current_opening(window: Window, now: datetime) -> tuple[datetime, datetime] | None:
    """``(start, end)`` in UTC of the occurrence of ``window`` containing ``now``, else None.

    When occurrences overlap (duration longer than the cron period) this is the one that
    started last, which is also the one that ends last.
    """
    _require_aware(now)
    compiled = _Compiled.of(window)
    x = _to_us(now)
    end = compiled.covering_end(x)
    if end is None:
        return None
    return _from_us(end - compiled.duration_us), _from_us(end)


def upcoming_openings(
    window: Window, after: datetime, count: int
) -> list[tuple[datetime, datetime]]:
    """The next ``count`` occurrences ``(start, end)`` of ``window`` starting after ``after``.

    An occurrence in progress at ``after`` (started ``<= after``) is included first, so the
    list suits a "next openings" display.
    """
    _require_aware(after, "after")
    if count < 0:
        raise ValueError("count must not be negative")
    compiled = _Compiled.of(window)
    x = _to_us(after)
    result: list[tuple[datetime, datetime]] = []
    current = compiled.covering_end(x)
    if current is not None and count:
        result.append((_from_us(current - compiled.duration_us), _from_us(current)))
    while len(result) < count:
        start = compiled.next_start(x)
        if start is None:
            break
        result.append((_from_us(start), _from_us(start + compiled.duration_us)))
        x = start
    return result


def window_state(
    windows: Sequence[Window], now: datetime, horizon: timedelta = DEFAULT_HORIZON
) -> WindowState:
    """Evaluate all windows of one environment at ``now``; see :class:`WindowState`.

    With no windows at all the state is open. Searches (``open_until``, ``next_opening``)
    look at most ``horizon`` ahead and examine a bounded number of candidate instants.
    """
    _require_aware(now)
    if horizon <= timedelta(0):
        raise ValueError("horizon must be positive")
    allows = [_Compiled.of(w) for w in windows if w.kind is WindowKind.ALLOW]
    denies = [_Compiled.of(w) for w in windows if w.kind is WindowKind.DENY]
    x = _to_us(now)
    limit = x + horizon // _US

    blocking = next((d.window for d in denies if d.covering_end(x) is not None), None)
    if blocking is not None:
        return WindowState(
            open=False,
            blocking=blocking,
            reason=REASON_DENY_WINDOW,
            next_opening=_next_opening(allows, denies, x, limit),
        )
    if allows and all(a.covering_end(x) is None for a in allows):
        return WindowState(
            open=False,
            reason=REASON_OUTSIDE_ALLOW_WINDOW,
            next_opening=_next_opening(allows, denies, x, limit),
        )
    if not allows:
        return WindowState(open=True)
    return WindowState(open=True, open_until=_open_until(allows, denies, x, limit))


def _next_opening(
    allows: Sequence[_Compiled], denies: Sequence[_Compiled], x: int, limit: int
) -> datetime | None:
    """The earliest instant ``>= x`` at which the state is open, if within ``limit``.

    The state only becomes open at an allow start or a deny end, and it is right-continuous,
    so jumping between those candidates in time order finds the first open instant.
    """
    for _ in range(_MAX_STEPS):
        if x > limit:
            return None
        deny_ends = [end for d in denies if (end := d.covering_end(x)) is not None]
        if deny_ends:
            # Each covering deny window stays closed until its latest occurrence ends.
            x = max(deny_ends)
            continue
        if allows and all(a.covering_end(x) is None for a in allows):
            starts = [s for a in allows if (s := a.next_start(x)) is not None]
            if not starts:
                return None
            x = min(starts)
            continue
        return _from_us(x)
    return None


def _open_until(
    allows: Sequence[_Compiled], denies: Sequence[_Compiled], x: int, limit: int
) -> datetime | None:
    """First instant after ``x`` at which an open-because-of-allow state closes.

    Follows the allow coverage forward (each step jumps to the end of the latest covering
    occurrences) until no allow window covers the instant, then cuts at the first deny start.
    """
    end: int | None = None
    probe = x
    for _ in range(_MAX_STEPS):
        if probe > limit:
            break
        ends = [e for a in allows if (e := a.covering_end(probe)) is not None]
        if not ends:
            end = probe
            break
        probe = max(ends)
    deny_starts = [s for d in denies if (s := d.next_start(x)) is not None and s <= limit]
    candidates = [s for s in deny_starts if end is None or s < end]
    if end is not None:
        candidates.append(end)
    return _from_us(min(candidates)) if candidates else None
