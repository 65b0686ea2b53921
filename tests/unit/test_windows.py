"""Availability windows: inside/outside, DST, window state and next opening (SPEC §4, §11)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from release_orchestrator.policy.windows import (
    REASON_DENY_WINDOW,
    REASON_OUTSIDE_ALLOW_WINDOW,
    Window,
    WindowKind,
    WindowState,
    current_opening,
    is_inside,
    next_start,
    parse_duration,
    previous_start,
    upcoming_openings,
    validate_window,
    window_state,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)
M = timedelta(minutes=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def allow(cron: str, duration: timedelta, tz: str = "UTC", id: int = 1) -> Window:
    return Window(id, WindowKind.ALLOW, cron, duration, tz)


def deny(cron: str, duration: timedelta, tz: str = "UTC", id: int = 2) -> Window:
    return Window(id, WindowKind.DENY, cron, duration, tz)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("cron", "duration", "tz", "message"),
    [
        ("61 * * * *", H, "UTC", "invalid cron expression '61 * * * *': "),
        ("* * * *", H, "UTC", "invalid cron expression '* * * *': expected 5 fields"),
        ("* * * * * *", H, "UTC", "invalid cron expression '* * * * * *': expected 5 fields"),
        ("", H, "UTC", "invalid cron expression '': expected 5 fields"),
        ("not a cron x y", H, "UTC", "invalid cron expression 'not a cron x y': "),
        ("0 0 30 2 *", H, "UTC", "invalid cron expression '0 0 30 2 *': it never fires"),
        ("H * * * *", H, "UTC", "invalid cron expression 'H * * * *': random"),
        ("0 9 * * *", timedelta(0), "UTC", "duration must be positive"),
        ("0 9 * * *", -H, "UTC", "duration must be positive"),
        ("0 9 * * *", H, "Mars/Base", "unknown timezone 'Mars/Base'"),
        ("0 9 * * *", H, "", "unknown timezone ''"),
        ("0 9 * * *", H, "../etc/passwd", "unknown timezone '../etc/passwd'"),
    ],
)
def test_validate_window_errors(cron: str, duration: timedelta, tz: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_window(cron, duration, tz)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


@pytest.mark.parametrize(
    "cron", ["0 9 * * 1-5", "*/15 * * * *", "0 0 L * *", "0 0 * * 5#2", "@daily", "0 22 * DEC SUN"]
)
def test_validate_window_accepts(cron: str) -> None:
    validate_window(cron, H, "Asia/Kolkata")


def test_window_construction_validates_and_coerces_kind() -> None:
    window = Window(1, "deny", "0 9 * * *", H)  # type: ignore[arg-type]
    assert window.kind is WindowKind.DENY
    assert window.timezone == "UTC"
    with pytest.raises(ValueError, match="window kind"):
        Window(1, "maybe", "0 9 * * *", H)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duration must be positive"):
        Window(1, WindowKind.ALLOW, "0 9 * * *", timedelta(0))


def test_window_kind_is_a_str_enum() -> None:
    assert WindowKind("allow") is WindowKind.ALLOW
    assert str(WindowKind.DENY) == "deny"
    assert WindowKind.DENY == "deny"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("1d", timedelta(days=1)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0m", "", "-1h", "5x", "h", "1.5h", "30m1h", "0h0m", " "])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_naive_now_is_rejected() -> None:
    window = allow("0 9 * * *", H)
    naive = datetime(2024, 1, 1, 9, 30)
    for call in (
        lambda: is_inside(window, naive),
        lambda: current_opening(window, naive),
        lambda: window_state([window], naive),
        lambda: window_state([], naive),
        lambda: next_start(window, naive),
    ):
        with pytest.raises(ValueError, match="timezone-aware"):
            call()


# --------------------------------------------------------------------------- inside


def test_inside_and_outside_with_inclusive_start_exclusive_end() -> None:
    window = allow("0 9 * * *", 2 * H)
    assert not is_inside(window, utc(2024, 5, 6, 8, 59, 59))
    assert is_inside(window, utc(2024, 5, 6, 9, 0))
    assert is_inside(window, utc(2024, 5, 6, 10, 59, 59, 999999))
    assert not is_inside(window, utc(2024, 5, 6, 11, 0))
    assert current_opening(window, utc(2024, 5, 6, 9, 0)) == (
        utc(2024, 5, 6, 9),
        utc(2024, 5, 6, 11),
    )
    assert current_opening(window, utc(2024, 5, 6, 11, 0)) is None


def test_now_in_another_timezone_is_the_same_instant() -> None:
    window = allow("0 9 * * *", H)
    assert is_inside(window, datetime(2024, 5, 6, 11, 30, tzinfo=BERLIN))  # 09:30 UTC


def test_occurrence_started_before_midnight_spans_into_today() -> None:
    window = allow("0 22 * * *", 8 * H)
    assert is_inside(window, utc(2024, 5, 7, 5, 59))
    assert current_opening(window, utc(2024, 5, 7, 3)) == (utc(2024, 5, 6, 22), utc(2024, 5, 7, 6))
    assert not is_inside(window, utc(2024, 5, 7, 6, 0))


def test_occurrence_started_days_ago() -> None:
    # Fridays 18:00 for 60 hours: the whole weekend.
    window = deny("0 18 * * FRI", timedelta(hours=60))
    assert is_inside(window, utc(2024, 5, 12, 23))  # Sunday
    assert current_opening(window, utc(2024, 5, 13, 5, 59)) == (
        utc(2024, 5, 10, 18),
        utc(2024, 5, 13, 6),
    )
    assert not is_inside(window, utc(2024, 5, 13, 6))


def test_duration_longer_than_cron_period() -> None:
    window = allow("0 * * * *", 90 * M)
    # Two occurrences cover 10:15; the latest one (10:00) is reported.
    assert current_opening(window, utc(2024, 5, 6, 10, 15)) == (
        utc(2024, 5, 6, 10),
        utc(2024, 5, 6, 11, 30),
    )
    assert all(is_inside(window, utc(2024, 5, 6, 10) + k * 7 * M) for k in range(40))


def test_rare_cron_far_in_the_past() -> None:
    window = allow("0 0 29 2 *", timedelta(days=2))
    assert previous_start(window, utc(2027, 6, 1)) == utc(2024, 2, 29)
    assert is_inside(window, utc(2028, 3, 1, 12))
    assert not is_inside(window, utc(2028, 3, 2, 0))
    assert next_start(window, utc(2024, 2, 29)) == utc(2028, 2, 29)


def test_asia_kolkata_half_hour_offset() -> None:
    window = allow("0 9 * * 1-5", 2 * H, "Asia/Kolkata")  # 09:00 IST = 03:30 UTC
    assert not is_inside(window, utc(2024, 5, 6, 3, 29))
    assert is_inside(window, utc(2024, 5, 6, 3, 30))
    assert is_inside(window, utc(2024, 5, 6, 5, 29))
    assert not is_inside(window, utc(2024, 5, 6, 5, 30))
    assert not is_inside(window, utc(2024, 5, 5, 4))  # Sunday
    assert next_start(window, utc(2024, 5, 4)) == utc(2024, 5, 6, 3, 30)


# --------------------------------------------------------------------------- DST


def test_berlin_office_hours_follow_local_time_across_spring_forward() -> None:
    window = allow("0 9 * * *", 8 * H, "Europe/Berlin")
    # Friday 29 March 2024 is CET (+01:00), Monday 1 April CEST (+02:00).
    assert current_opening(window, utc(2024, 3, 29, 12)) == (
        utc(2024, 3, 29, 8),
        utc(2024, 3, 29, 16),
    )
    assert current_opening(window, utc(2024, 4, 1, 12)) == (utc(2024, 4, 1, 7), utc(2024, 4, 1, 15))
    assert not is_inside(window, utc(2024, 3, 29, 7, 30))
    assert is_inside(window, utc(2024, 4, 1, 7, 30))


def test_berlin_nonexistent_wall_time_moves_forward_by_the_gap() -> None:
    # 31 March 2024: 02:00 CET jumps to 03:00 CEST, 02:30 does not exist -> 03:30 CEST.
    window = allow("30 2 * * *", H, "Europe/Berlin")
    assert upcoming_openings(window, utc(2024, 3, 30), 3) == [
        (utc(2024, 3, 30, 1, 30), utc(2024, 3, 30, 2, 30)),  # 02:30 CET
        (utc(2024, 3, 31, 1, 30), utc(2024, 3, 31, 2, 30)),  # 03:30 CEST
        (utc(2024, 4, 1, 0, 30), utc(2024, 4, 1, 1, 30)),  # 02:30 CEST
    ]
    assert not is_inside(window, utc(2024, 3, 31, 0, 45))
    assert is_inside(window, utc(2024, 3, 31, 1, 45))


def test_berlin_hourly_window_has_no_hole_at_either_transition() -> None:
    window = allow("0 * * * *", H, "Europe/Berlin")
    for start in (utc(2024, 3, 30, 22), utc(2024, 10, 26, 22)):
        assert all(is_inside(window, start + k * 10 * M) for k in range(36))


def test_berlin_ambiguous_wall_time_fires_in_both_occurrences() -> None:
    # 27 October 2024: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    window = allow("30 2 * * *", 30 * M, "Europe/Berlin")
    assert is_inside(window, utc(2024, 10, 27, 0, 45))  # 02:45 CEST
    assert not is_inside(window, utc(2024, 10, 27, 1, 10))  # 02:10 CET
    assert is_inside(window, utc(2024, 10, 27, 1, 45))  # 02:45 CET
    assert not is_inside(window, utc(2024, 10, 27, 2))
    assert next_start(window, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 27, 1, 30)
    assert previous_start(window, utc(2024, 10, 27, 1, 29)) == utc(2024, 10, 27, 0, 30)


def test_duration_is_absolute_across_a_transition() -> None:
    # Starts 22:00 CET on 30 March, lasts 8 real hours: ends 07:00 CEST (05:00 UTC).
    window = deny("0 22 * * *", 8 * H, "Europe/Berlin")
    assert current_opening(window, utc(2024, 3, 31, 1)) == (
        utc(2024, 3, 30, 21),
        utc(2024, 3, 31, 5),
    )


def test_new_york_transitions() -> None:
    # 10 March 2024: 02:00 EST -> 03:00 EDT. 3 November 2024: 02:00 EDT -> 01:00 EST.
    window = allow("30 2 * * *", H, "America/New_York")
    assert current_opening(window, utc(2024, 3, 9, 8)) == (
        utc(2024, 3, 9, 7, 30),
        utc(2024, 3, 9, 8, 30),
    )
    # 02:30 does not exist on 10 March -> 03:30 EDT = 07:30 UTC.
    assert current_opening(window, utc(2024, 3, 10, 8)) == (
        utc(2024, 3, 10, 7, 30),
        utc(2024, 3, 10, 8, 30),
    )
    assert current_opening(window, utc(2024, 3, 11, 7)) == (
        utc(2024, 3, 11, 6, 30),
        utc(2024, 3, 11, 7, 30),
    )
    ambiguous = allow("30 1 * * *", 30 * M, "America/New_York")
    assert next_start(ambiguous, utc(2024, 11, 3)) == utc(2024, 11, 3, 5, 30)  # 01:30 EDT
    assert next_start(ambiguous, utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 3, 6, 30)  # 01:30 EST
    assert next_start(ambiguous, utc(2024, 11, 3, 6, 30)) == utc(2024, 11, 4, 6, 30)


def _reference_fires(cron: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Brute force over every UTC minute: matching wall times, plus skipped ones shifted."""
    fires: set[datetime] = set()
    u = start
    while u < end:
        local = u.astimezone(tz)
        after = (u + M).astimezone(tz)
        if croniter.match(cron, local.replace(tzinfo=None)):
            fires.add(u)
        gap = after.utcoffset() - local.utcoffset()  # type: ignore[operator]
        if gap > timedelta(0):
            wall = local.replace(tzinfo=None) + M
            while wall < after.replace(tzinfo=None):
                if croniter.match(cron, wall):
                    fires.add(wall.replace(tzinfo=tz, fold=0).astimezone(UTC))
                wall += M
        u += M
    return sorted(fires)


@pytest.mark.parametrize(
    ("cron", "tz", "start"),
    [
        ("*/20 * * * *", "Europe/Berlin", utc(2024, 3, 30, 20)),
        ("*/20 * * * *", "Europe/Berlin", utc(2024, 10, 26, 20)),
        ("15,45 1-3 * * *", "America/New_York", utc(2024, 3, 9, 20)),
        ("15,45 0-2 * * *", "America/New_York", utc(2024, 11, 2, 20)),
        ("0,30 * * * *", "Australia/Lord_Howe", utc(2024, 4, 6, 10)),
        ("0 0 * * *", "America/Santiago", utc(2024, 9, 7, 12)),
        ("30 2 * * *", "Asia/Kolkata", utc(2024, 1, 1)),
    ],
)
def test_fire_times_match_a_brute_force_reference(cron: str, tz: str, start: datetime) -> None:
    window = allow(cron, M, tz)
    end = start + timedelta(hours=30)
    expected = _reference_fires(
        cron, ZoneInfo(tz), start - timedelta(days=1), end + timedelta(days=1)
    )
    expected = [t for t in expected if start <= t < end]
    got: list[datetime] = []
    cursor = start - timedelta(microseconds=1)
    while cursor < end:
        found = next_start(window, cursor)
        assert found is not None
        got.append(found)
        cursor = found
    assert got[:-1] == expected
    for t in expected:
        assert previous_start(window, t) == t
        assert previous_start(window, t + 30 * timedelta(seconds=1)) == t


# --------------------------------------------------------------------------- window state


def test_no_windows_is_open() -> None:
    assert window_state([], utc(2024, 5, 6)) == WindowState(open=True)


def test_only_deny_windows_outside_them_is_open_without_open_until() -> None:
    state = window_state([deny("0 1 * * *", H)], utc(2024, 5, 6, 12))
    assert state == WindowState(
        open=True, blocking=None, reason=None, open_until=None, next_opening=None
    )


def test_inside_allow_window() -> None:
    state = window_state([allow("0 9 * * *", 8 * H)], utc(2024, 5, 6, 10))
    assert state == WindowState(open=True, open_until=utc(2024, 5, 6, 17))


def test_outside_allow_window_reports_next_opening() -> None:
    state = window_state([allow("0 9 * * 1-5", 8 * H)], utc(2024, 5, 4, 10))  # Saturday
    assert not state.open
    assert state.reason == REASON_OUTSIDE_ALLOW_WINDOW
    assert state.blocking is None
    assert state.open_until is None
    assert state.next_opening == utc(2024, 5, 6, 9)


def test_deny_overrides_allow() -> None:
    blocker = deny("0 12 * * *", H)
    state = window_state([allow("0 9 * * *", 8 * H), blocker], utc(2024, 5, 6, 12, 30))
    assert state == WindowState(
        open=False, blocking=blocker, reason=REASON_DENY_WINDOW, next_opening=utc(2024, 5, 6, 13)
    )


def test_open_until_is_cut_by_an_upcoming_deny_window() -> None:
    state = window_state([allow("0 9 * * *", 8 * H), deny("0 12 * * *", H)], utc(2024, 5, 6, 10))
    assert state.open and state.open_until == utc(2024, 5, 6, 12)


def test_open_until_merges_overlapping_allow_windows() -> None:
    windows = [allow("0 9 * * *", 4 * H, id=1), allow("0 12 * * *", 4 * H, id=2)]
    assert window_state(windows, utc(2024, 5, 6, 10)).open_until == utc(2024, 5, 6, 16)
    hourly = [allow("0 * * * *", 90 * M)]  # always open
    assert window_state(hourly, utc(2024, 5, 6, 10), horizon=timedelta(days=2)).open_until is None


def test_next_opening_when_deny_covers_start_of_next_allow() -> None:
    windows = [allow("0 9 * * *", 4 * H), deny("0 8 * * *", 2 * H)]
    state = window_state(windows, utc(2024, 5, 6, 6))
    assert state.reason == REASON_OUTSIDE_ALLOW_WINDOW
    assert state.next_opening == utc(2024, 5, 6, 10)  # deny ends inside the allow window


def test_next_opening_skips_an_allow_window_fully_covered_by_deny() -> None:
    windows = [allow("0 9 * * *", 2 * H), deny("0 8 * * 1", 4 * H)]  # Mondays denied
    state = window_state(windows, utc(2024, 5, 6, 7))  # Monday
    assert state.next_opening == utc(2024, 5, 7, 9)


def test_next_opening_with_chained_deny_windows() -> None:
    windows = [
        deny("0 10 * * *", 2 * H, id=2),
        deny("0 11 * * *", 2 * H, id=3),
        deny("30 12 * * *", 2 * H, id=4),
    ]
    state = window_state(windows, utc(2024, 5, 6, 10, 30))
    assert state.blocking is not None and state.blocking.id == 2
    assert state.next_opening == utc(2024, 5, 6, 14, 30)


def test_allow_windows_only_in_the_future() -> None:
    window = allow("0 0 1 1 *", H)
    state = window_state([window], utc(2024, 5, 6))
    assert state.next_opening == utc(2025, 1, 1)
    short = window_state([window], utc(2024, 5, 6), horizon=timedelta(days=30))
    assert short.next_opening is None
    assert not short.open


def test_never_opening_returns_none_quickly() -> None:
    windows = [allow("*/2 * * * *", M), deny("*/2 * * * *", M)]
    state = window_state(windows, utc(2024, 5, 6))
    assert not state.open and state.next_opening is None


def test_window_state_results_are_utc() -> None:
    state = window_state(
        [allow("0 9 * * *", H, "Europe/Berlin")], datetime(2024, 5, 6, 12, tzinfo=BERLIN)
    )
    assert state.next_opening == utc(2024, 5, 7, 7)
    assert state.next_opening is not None and state.next_opening.tzinfo is UTC


_CRONS = st.sampled_from(["0 9 * * 1-5", "*/20 * * * *", "30 2 * * *", "0 22 * * FRI", "0 0 1 * *"])
_ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
_NOWS = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=100, deadline=None)
@given(
    cron=_CRONS,
    tz=_ZONES,
    minutes=st.integers(1, 4000),
    deny_cron=_CRONS,
    deny_minutes=st.integers(1, 600),
    now=_NOWS,
)
def test_next_opening_is_open_and_nothing_earlier_is(
    cron: str, tz: str, minutes: int, deny_cron: str, deny_minutes: int, now: datetime
) -> None:
    windows = [allow(cron, minutes * M, tz), deny(deny_cron, deny_minutes * M, tz)]
    state = window_state(windows, now, horizon=timedelta(days=60))
    if state.open:
        assert state.reason is None and state.next_opening is None
        assert state.open_until is None or state.open_until > now
        if state.open_until is not None:
            assert not window_state(windows, state.open_until).open
            probe = now + (state.open_until - now) / 2
            assert window_state(windows, probe).open
        return
    assert state.reason in (REASON_DENY_WINDOW, REASON_OUTSIDE_ALLOW_WINDOW)
    if state.next_opening is None:
        return
    assert state.next_opening > now
    assert window_state(windows, state.next_opening).open
    assert not window_state(windows, state.next_opening - timedelta(microseconds=1)).open
