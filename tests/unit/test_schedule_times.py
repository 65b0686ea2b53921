"""Schedule fire times: --every parsing, anchors, missed-fire collapse and DST (SPEC §7, §11)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release_orchestrator.policy.schedule import (
    Interval,
    IntervalUnit,
    due_fire,
    fire_index_at_or_before,
    fire_time,
    first_fire,
    next_fire_after,
    next_fires,
    parse_every,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
M = timedelta(minutes=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# --------------------------------------------------------------------------- parse_every


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("15m", 15, IntervalUnit.MINUTES),
        ("1m", 1, IntervalUnit.MINUTES),
        ("2h", 2, IntervalUnit.HOURS),
        ("1d", 1, IntervalUnit.DAYS),
        ("3w", 3, IntervalUnit.WEEKS),
        ("90m", 90, IntervalUnit.MINUTES),
        (" 6h ", 6, IntervalUnit.HOURS),
    ],
)
def test_parse_every(text: str, value: int, unit: IntervalUnit) -> None:
    interval = parse_every(text)
    assert interval == Interval(value, unit)
    assert str(interval) == f"{value}{unit.value}"


@pytest.mark.parametrize(
    "text", ["0m", "5x", "", "-1h", "1.5h", "m", "15", "1 h", "1H", "h1", "1hm"]
)
def test_parse_every_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_every(text)
    assert str(info.value) == f"--every must be <positive integer><m|h|d|w>, got '{text}'"


def test_parse_every_rejects_absurdly_long_intervals() -> None:
    with pytest.raises(ValueError, match="at most"):
        parse_every("99999999999w")


def test_interval_validation_and_str() -> None:
    assert str(Interval(15, IntervalUnit.MINUTES)) == "15m"
    assert Interval(2, "w").unit is IntervalUnit.WEEKS  # type: ignore[arg-type]
    assert Interval(2, IntervalUnit.HOURS).nominal == timedelta(hours=2)
    assert Interval(1, IntervalUnit.DAYS).is_calendar
    assert not Interval(1, IntervalUnit.HOURS).is_calendar
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            Interval(bad, IntervalUnit.MINUTES)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Interval(1, "y")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- argument checks


def test_naive_datetimes_and_unknown_timezones_are_rejected() -> None:
    every = parse_every("1h")
    naive = datetime(2024, 1, 1)
    aware = utc(2024, 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        fire_time(naive, every, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        first_fire(aware, every, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_after(aware, every, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        due_fire(aware, every, aware, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        due_fire(aware, every, naive, aware)
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Base'"):
        fire_time(aware, every, 1, "Mars/Base")
    with pytest.raises(ValueError, match="unknown timezone"):
        next_fires(aware, parse_every("1d"), aware, 3, "")
    with pytest.raises(ValueError):
        next_fires(aware, every, aware, -1)


# --------------------------------------------------------------------------- each unit


@pytest.mark.parametrize(
    ("every", "k", "expected"),
    [
        ("15m", 1, utc(2024, 1, 1, 10, 15)),
        ("15m", 10, utc(2024, 1, 1, 12, 30)),
        ("2h", 3, utc(2024, 1, 1, 16)),
        ("1d", 31, utc(2024, 2, 1, 10)),
        ("2w", 2, utc(2024, 1, 29, 10)),
        ("1d", -1, utc(2023, 12, 31, 10)),
    ],
)
def test_fire_time_each_unit(every: str, k: int, expected: datetime) -> None:
    assert fire_time(utc(2024, 1, 1, 10), parse_every(every), k) == expected


def test_fire_time_zero_is_start_at_in_utc() -> None:
    start = datetime(2024, 1, 1, 10, tzinfo=BERLIN)
    result = fire_time(start, parse_every("1d"), 0, "Europe/Berlin")
    assert result == start
    assert result.tzinfo is UTC


def test_minutes_and_hours_are_absolute_across_dst() -> None:
    start = datetime(2024, 3, 31, 1, 0, tzinfo=BERLIN)  # 00:00 UTC
    assert fire_time(start, parse_every("1h"), 1, "Europe/Berlin") == utc(2024, 3, 31, 1)
    assert fire_time(start, parse_every("1h"), 2, "Europe/Berlin") == utc(2024, 3, 31, 2)
    assert fire_time(start, parse_every("30m"), 5, "Europe/Berlin") == utc(2024, 3, 31, 2, 30)


# --------------------------------------------------------------------------- anchors


def test_first_fire_with_future_anchor_is_the_anchor() -> None:
    start = utc(2024, 6, 1, 2)
    assert first_fire(start, parse_every("1d"), utc(2024, 5, 1)) == start
    assert first_fire(start, parse_every("1d"), start) == start


def test_first_fire_with_past_anchor() -> None:
    start = utc(2024, 1, 1, 2)
    assert first_fire(start, parse_every("15m"), utc(2024, 1, 1, 3, 7)) == utc(2024, 1, 1, 3, 15)
    assert first_fire(start, parse_every("1d"), utc(2024, 3, 10, 12)) == utc(2024, 3, 11, 2)
    assert first_fire(start, parse_every("1w"), utc(2024, 1, 9)) == utc(2024, 1, 15, 2)


def test_first_fire_exactly_at_a_fire_time() -> None:
    start = utc(2024, 1, 1, 2)
    assert first_fire(start, parse_every("15m"), utc(2024, 1, 1, 3, 15)) == utc(2024, 1, 1, 3, 15)
    assert first_fire(start, parse_every("1d"), utc(2024, 1, 5, 2)) == utc(2024, 1, 5, 2)
    assert next_fire_after(start, parse_every("15m"), utc(2024, 1, 1, 3, 15)) == utc(
        2024, 1, 1, 3, 30
    )


def test_next_fire_after_before_the_anchor_is_the_anchor() -> None:
    start = utc(2024, 1, 1, 2)
    assert next_fire_after(start, parse_every("1h"), utc(2023, 12, 1)) == start
    assert next_fire_after(start, parse_every("1h"), start - timedelta(microseconds=1)) == start
    assert next_fire_after(start, parse_every("1h"), start) == utc(2024, 1, 1, 3)


def test_next_fires_exclusive_and_inclusive() -> None:
    start = utc(2024, 1, 1)
    every = parse_every("6h")
    at = utc(2024, 1, 2, 6)
    assert next_fires(start, every, at, 3) == [
        utc(2024, 1, 2, 12),
        utc(2024, 1, 2, 18),
        utc(2024, 1, 3),
    ]
    assert next_fires(start, every, at, 3, inclusive=True) == [
        utc(2024, 1, 2, 6),
        utc(2024, 1, 2, 12),
        utc(2024, 1, 2, 18),
    ]
    future = utc(2025, 1, 1)
    assert next_fires(future, every, at, 2, inclusive=True) == [future, utc(2025, 1, 1, 6)]
    assert next_fires(future, every, at, 2) == [future, utc(2025, 1, 1, 6)]
    assert next_fires(start, every, at, 0) == []
    shown = next_fires(start, every, utc(2024, 1, 2, 7), 1, inclusive=True)
    assert shown == [first_fire(start, every, utc(2024, 1, 2, 7))]


def test_fire_index_at_or_before() -> None:
    start = utc(2024, 1, 1)
    assert fire_index_at_or_before(start, parse_every("15m"), utc(2024, 1, 1, 1, 14)) == 4
    assert fire_index_at_or_before(start, parse_every("15m"), utc(2024, 1, 1, 1, 15)) == 5
    assert fire_index_at_or_before(start, parse_every("15m"), utc(2023, 1, 1)) is None


def test_minute_schedule_far_from_the_anchor_is_constant_time() -> None:
    start = utc(2000, 1, 1)
    every = parse_every("1m")
    after = utc(2099, 12, 31, 23, 59, 30)
    assert next_fire_after(start, every, after) == utc(2100, 1, 1)
    assert next_fire_after(start, parse_every("1d"), after) == utc(2100, 1, 1)


# --------------------------------------------------------------------------- due_fire


def test_due_fire_not_yet_due() -> None:
    start = utc(2024, 1, 1)
    assert due_fire(start, parse_every("1h"), utc(2024, 1, 1, 5), utc(2024, 1, 1, 4, 59)) == (
        None,
        utc(2024, 1, 1, 5),
    )


def test_due_fire_exactly_on_time() -> None:
    start = utc(2024, 1, 1)
    assert due_fire(start, parse_every("1h"), utc(2024, 1, 1, 5), utc(2024, 1, 1, 5)) == (
        utc(2024, 1, 1, 5),
        utc(2024, 1, 1, 6),
    )


def test_due_fire_collapses_three_missed_fires_into_one() -> None:
    start = utc(2024, 1, 1)
    every = parse_every("15m")
    # Due at 10:00; the beat was down until 10:40: 10:00, 10:15 and 10:30 were missed.
    due, following = due_fire(start, every, utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 40))
    assert due == utc(2024, 1, 1, 10, 30)
    assert following == utc(2024, 1, 1, 10, 45)
    # The next tick with the new next_run_at has nothing to do until 10:45.
    assert due_fire(start, every, following, utc(2024, 1, 1, 10, 41)) == (None, following)


def test_due_fire_daily_across_dst_in_berlin() -> None:
    start = datetime(2024, 3, 28, 2, 0, tzinfo=BERLIN)
    every = parse_every("1d")
    next_run = utc(2024, 3, 29, 1)  # 02:00 CET
    due, following = due_fire(start, every, next_run, utc(2024, 4, 1, 3), "Europe/Berlin")
    assert due == utc(2024, 4, 1, 0)  # 02:00 CEST on 1 April
    assert following == utc(2024, 4, 2, 0)


def test_due_fire_with_unaligned_stored_time() -> None:
    start = utc(2024, 1, 1)
    due, following = due_fire(
        start, parse_every("1h"), utc(2024, 1, 1, 5, 30), utc(2024, 1, 1, 5, 45)
    )
    assert due is None
    assert following == utc(2024, 1, 1, 6)


# --------------------------------------------------------------------------- DST


def test_daily_at_0200_berlin_keeps_wall_time() -> None:
    start = datetime(2024, 3, 25, 2, 0, tzinfo=BERLIN)  # Monday, CET
    fires = next_fires(start, parse_every("1d"), start, 10, "Europe/Berlin", inclusive=True)
    local = [f.astimezone(BERLIN) for f in fires]
    # 31 March: 02:00 does not exist (02:00 -> 03:00): moved forward by the gap, 03:00 CEST.
    assert [t.strftime("%m-%d %H:%M %z") for t in local] == [
        "03-25 02:00 +0100",
        "03-26 02:00 +0100",
        "03-27 02:00 +0100",
        "03-28 02:00 +0100",
        "03-29 02:00 +0100",
        "03-30 02:00 +0100",
        "03-31 03:00 +0200",
        "04-01 02:00 +0200",
        "04-02 02:00 +0200",
        "04-03 02:00 +0200",
    ]
    assert all(f.tzinfo is UTC for f in fires)


def test_daily_nonexistent_0230_moves_forward_by_the_gap() -> None:
    start = datetime(2024, 3, 29, 2, 30, tzinfo=BERLIN)
    fires = next_fires(start, parse_every("1d"), start, 4, "Europe/Berlin", inclusive=True)
    assert fires == [
        utc(2024, 3, 29, 1, 30),  # 02:30 CET
        utc(2024, 3, 30, 1, 30),  # 02:30 CET
        utc(2024, 3, 31, 1, 30),  # 02:30 does not exist -> 03:30 CEST
        utc(2024, 4, 1, 0, 30),  # 02:30 CEST
    ]


def test_daily_ambiguous_0230_takes_the_first_occurrence() -> None:
    start = datetime(2024, 10, 25, 2, 30, tzinfo=BERLIN)
    fires = next_fires(start, parse_every("1d"), start, 4, "Europe/Berlin", inclusive=True)
    assert fires == [
        utc(2024, 10, 25, 0, 30),  # 02:30 CEST
        utc(2024, 10, 26, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 0, 30),  # 02:30 happens twice: the first (CEST)
        utc(2024, 10, 28, 1, 30),  # 02:30 CET
    ]
    # A tick between the two 02:30s does not fire the second one.
    assert next_fire_after(start, parse_every("1d"), utc(2024, 10, 27, 0, 30), "Europe/Berlin") == (
        utc(2024, 10, 28, 1, 30)
    )


def test_weekly_across_both_berlin_transitions() -> None:
    start = datetime(2024, 3, 24, 2, 30, tzinfo=BERLIN)  # Sunday
    every = parse_every("1w")
    assert fire_time(start, every, 1, "Europe/Berlin") == utc(2024, 3, 31, 1, 30)  # 03:30 CEST
    assert fire_time(start, every, 2, "Europe/Berlin") == utc(2024, 4, 7, 0, 30)
    assert fire_time(start, every, 31, "Europe/Berlin") == utc(2024, 10, 27, 0, 30)  # first 02:30
    assert fire_time(start, every, 32, "Europe/Berlin") == utc(2024, 11, 3, 1, 30)
    assert first_fire(start, every, utc(2024, 10, 27, 0, 31), "Europe/Berlin") == utc(
        2024, 11, 3, 1, 30
    )


def test_anchor_in_the_second_occurrence_of_an_ambiguous_time() -> None:
    start = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=BERLIN)  # 01:30 UTC
    every = parse_every("1d")
    assert fire_time(start, every, 0, "Europe/Berlin") == utc(2024, 10, 27, 1, 30)
    assert fire_time(start, every, 1, "Europe/Berlin") == utc(2024, 10, 28, 1, 30)
    assert fire_time(start, every, -1, "Europe/Berlin") == utc(2024, 10, 26, 0, 30)
    # (Compare in UTC: PEP 495 makes == across zones False for the fold=1 instant.)
    assert next_fire_after(start, every, utc(2024, 10, 27, 1), "Europe/Berlin") == utc(
        2024, 10, 27, 1, 30
    )


def test_daily_new_york() -> None:
    start = datetime(2024, 11, 2, 1, 30, tzinfo=ZoneInfo("America/New_York"))  # EDT
    fires = next_fires(start, parse_every("1d"), start, 3, "America/New_York", inclusive=True)
    assert fires == [utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]


def test_day_steps_use_the_schedule_timezone_not_the_anchor_offset() -> None:
    start = utc(2024, 3, 30, 1)  # 02:00 CET, given in UTC
    assert fire_time(start, parse_every("1d"), 2, "Europe/Berlin") == utc(2024, 4, 1, 0)
    assert fire_time(start, parse_every("1d"), 2) == utc(2024, 4, 1, 1)


# --------------------------------------------------------------------------- properties

_INTERVALS = st.builds(Interval, st.integers(1, 60), st.sampled_from(list(IntervalUnit)))
_ZONES = st.sampled_from(
    ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
)
_MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(start=_MOMENTS, interval=_INTERVALS, after=_MOMENTS, tz=_ZONES, n=st.integers(1, 6))
def test_fire_times_properties(
    start: datetime, interval: Interval, after: datetime, tz: str, n: int
) -> None:
    nxt = next_fire_after(start, interval, after, tz)
    assert nxt > after
    assert nxt >= start
    assert nxt.tzinfo is UTC
    fires = next_fires(start, interval, after, n, tz)
    assert fires[0] == nxt
    assert all(a < b for a, b in itertools.pairwise(fires))
    if n > 1:
        assert next_fire_after(start, interval, fires[0], tz) == fires[1]
    first = first_fire(start, interval, after, tz)
    assert first >= after and first >= start
    assert first == (
        start if start >= after else next_fires(start, interval, after, 1, tz, inclusive=True)[0]
    )
    if first > start:
        assert first - interval.nominal < after or interval.is_calendar
    if not interval.is_calendar:
        for t in fires:
            assert (t - start) % interval.nominal == timedelta(0)
    else:
        local_start = start.astimezone(ZoneInfo(tz))
        for t in fires:
            days = (t.astimezone(ZoneInfo(tz)).date() - local_start.date()).days
            assert days % (interval.value * (7 if interval.unit is IntervalUnit.WEEKS else 1)) == 0


@settings(max_examples=200, deadline=None)
@given(
    start=_MOMENTS, interval=_INTERVALS, k=st.integers(0, 200), tz=_ZONES, lag=st.integers(0, 10**7)
)
def test_fire_times_strictly_increasing_and_due_fire_consistent(
    start: datetime, interval: Interval, k: int, tz: str, lag: int
) -> None:
    a = fire_time(start, interval, k, tz)
    b = fire_time(start, interval, k + 1, tz)
    assert a < b
    assert next_fire_after(start, interval, a, tz) == b
    assert first_fire(start, interval, a, tz) == a
    now = a + timedelta(seconds=lag)
    due, following = due_fire(start, interval, a, now, tz)
    assert due is not None and a <= due <= now
    assert following > now
    assert next_fire_after(start, interval, due, tz) == following
    assert following == next_fire_after(start, interval, now, tz)
