"""Budget periods: calendar windows in a zone (month ends, leap years, DST), rolling, never."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.core.periods import (
    EPOCH,
    Period,
    initial_window,
    parse_period,
    parse_timezone,
    period_window,
)
from metering.errors import InvalidInput

UTC = "UTC"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily", Period("daily")),
        ("Weekly", Period("weekly")),
        (" monthly ", Period("monthly")),
        ("yearly", Period("yearly")),
        ("never", Period("never")),
        ("1h", Period("hours", 1)),
        ("12h", Period("hours", 12)),
        ("7d", Period("days", 7)),
    ],
)
def test_parse_period(text: str, expected: Period) -> None:
    assert parse_period(text) == expected
    assert parse_period(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "hourly", "0h", "-1d", "1.5h", "h", "3w", "10 d", "01h"])
def test_parse_period_rejects_bad_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="Nh or Nd"):
        parse_period(text)


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "../etc/passwd", " UTC"])
def test_parse_timezone_rejects_unknown(name: str) -> None:
    with pytest.raises(InvalidInput, match="IANA"):
        parse_timezone(name)


def test_month_end_and_leap_year() -> None:
    monthly = Period("monthly")
    assert period_window(monthly, UTC, datetime(2024, 1, 31, 23, 59)) == (
        datetime(2024, 1, 1),
        datetime(2024, 2, 1),
    )
    assert period_window(monthly, UTC, datetime(2024, 2, 29, 12)) == (
        datetime(2024, 2, 1),
        datetime(2024, 3, 1),
    )
    assert period_window(monthly, UTC, datetime(2023, 2, 28, 12)) == (
        datetime(2023, 2, 1),
        datetime(2023, 3, 1),
    )
    assert period_window(Period("daily"), UTC, datetime(2024, 2, 29, 5)) == (
        datetime(2024, 2, 29),
        datetime(2024, 3, 1),
    )


def test_year_end() -> None:
    assert period_window(Period("yearly"), UTC, datetime(2025, 12, 31, 23, 59, 59)) == (
        datetime(2025, 1, 1),
        datetime(2026, 1, 1),
    )
    assert period_window(Period("monthly"), UTC, datetime(2025, 12, 15)) == (
        datetime(2025, 12, 1),
        datetime(2026, 1, 1),
    )
    assert period_window(Period("yearly"), UTC, datetime(2026, 1, 1)) == (
        datetime(2026, 1, 1),
        datetime(2027, 1, 1),
    )


def test_monthly_in_a_zone_starts_at_local_midnight() -> None:
    # 1 March 00:00 in Berlin (CET, +1) is 28 Feb 23:00 UTC.
    start, end = period_window(Period("monthly"), "Europe/Berlin", datetime(2025, 2, 28, 23, 30))
    assert (start, end) == (datetime(2025, 2, 28, 23), datetime(2025, 3, 31, 22))  # CEST by April


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", datetime(2025, 3, 30, 12), 23),  # spring forward
        ("Europe/Berlin", datetime(2025, 10, 26, 12), 25),  # fall back
        ("America/New_York", datetime(2025, 3, 9, 17), 23),
        ("America/New_York", datetime(2025, 11, 2, 17), 25),
        ("America/New_York", datetime(2025, 6, 1, 17), 24),
    ],
)
def test_daily_budget_day_across_dst(zone: str, day: datetime, hours: int) -> None:
    start, end = period_window(Period("daily"), zone, day)
    assert end is not None
    assert end - start == timedelta(hours=hours)
    assert start <= day < end


def test_dst_day_boundaries_are_local_midnights() -> None:
    # Berlin 2025-03-30: 00:00 CET = 29th 23:00 UTC; 31st 00:00 CEST = 30th 22:00 UTC.
    assert period_window(Period("daily"), "Europe/Berlin", datetime(2025, 3, 30, 1)) == (
        datetime(2025, 3, 29, 23),
        datetime(2025, 3, 30, 22),
    )
    # New York 2025-11-02: 00:00 EDT = 04:00 UTC; 3rd 00:00 EST = 05:00 UTC.
    assert period_window(Period("daily"), "America/New_York", datetime(2025, 11, 2, 6)) == (
        datetime(2025, 11, 2, 4),
        datetime(2025, 11, 3, 5),
    )


def test_weekly_resets_on_monday_in_its_zone() -> None:
    weekly = Period("weekly")
    # Sunday 2025-06-08 23:30 UTC is already Monday 01:30 in Berlin.
    at = datetime(2025, 6, 8, 23, 30)
    assert period_window(weekly, UTC, at) == (datetime(2025, 6, 2), datetime(2025, 6, 9))
    assert period_window(weekly, "Europe/Berlin", at) == (
        datetime(2025, 6, 8, 22),
        datetime(2025, 6, 15, 22),
    )
    # ...and still Sunday evening in New York: the previous week there.
    assert period_window(weekly, "America/New_York", at) == (
        datetime(2025, 6, 2, 4),
        datetime(2025, 6, 9, 4),
    )


def test_weekly_window_spanning_dst_is_one_hour_short() -> None:
    start, end = period_window(Period("weekly"), "Europe/Berlin", datetime(2025, 3, 27))
    assert (start, end) == (datetime(2025, 3, 23, 23), datetime(2025, 3, 30, 22))
    assert end - start == timedelta(days=7) - timedelta(hours=1)


def test_rolling_hours_windows_are_anchored_and_consecutive() -> None:
    period = Period("hours", 4)
    start, end = initial_window(period, UTC, datetime(2025, 5, 1, 10, 17, 3))
    assert (start, end) == (datetime(2025, 5, 1, 10), datetime(2025, 5, 1, 14))
    # Anchored at the current period_start, later and earlier windows stay on the lattice.
    assert period_window(period, UTC, datetime(2025, 5, 1, 14), anchor=start) == (
        datetime(2025, 5, 1, 14),
        datetime(2025, 5, 1, 18),
    )
    assert period_window(period, UTC, datetime(2025, 5, 2, 9, 59), anchor=start) == (
        datetime(2025, 5, 2, 6),
        datetime(2025, 5, 2, 10),
    )
    assert period_window(period, UTC, datetime(2025, 5, 1, 9), anchor=start) == (
        datetime(2025, 5, 1, 6),
        datetime(2025, 5, 1, 10),
    )


def test_rolling_hours_anchor_floors_to_the_local_hour() -> None:
    # India is UTC+5:30: the local hour starts at :30 UTC.
    start, _ = initial_window(Period("hours", 1), "Asia/Kolkata", datetime(2025, 5, 1, 10, 17))
    assert start == datetime(2025, 5, 1, 9, 30)


def test_rolling_days_are_local_calendar_days() -> None:
    period = Period("days", 3)
    start, end = initial_window(period, "Europe/Berlin", datetime(2025, 3, 28, 15))
    assert (start, end) == (datetime(2025, 3, 27, 23), datetime(2025, 3, 30, 22))
    assert period_window(period, "Europe/Berlin", datetime(2025, 3, 30, 22), anchor=start) == (
        datetime(2025, 3, 30, 22),
        datetime(2025, 4, 2, 22),
    )


def test_rolling_needs_an_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        period_window(Period("hours", 2), UTC, datetime(2025, 1, 1))


def test_never_is_one_lifetime_window() -> None:
    assert period_window(Period("never"), "Europe/Berlin", datetime(2030, 1, 1)) == (EPOCH, None)


def test_aware_datetimes_are_refused() -> None:
    from datetime import UTC as utc

    with pytest.raises(ValueError, match="naive UTC"):
        period_window(Period("daily"), UTC, datetime(2025, 1, 1, tzinfo=utc))


ZONES = st.sampled_from(
    [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Pacific/Apia",
        "America/Havana",
    ]
)
PERIODS = st.sampled_from(["daily", "weekly", "monthly", "yearly", "1h", "5h", "1d", "3d"])
INSTANTS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1))


@given(period=PERIODS, zone=ZONES, at=INSTANTS, anchor=INSTANTS)
def test_window_contains_at_and_next_window_starts_at_its_end(
    period: str, zone: str, at: datetime, anchor: datetime
) -> None:
    p = parse_period(period)
    origin, _ = initial_window(p, zone, anchor)
    start, end = period_window(p, zone, at, anchor=origin)
    assert end is not None
    assert start <= at < end
    assert period_window(p, zone, end, anchor=origin)[0] == end
    # Anchoring at any window start gives the same windows (the lattice is invariant).
    assert period_window(p, zone, at, anchor=start) == (start, end)
    # The instant before the start belongs to the previous window, which ends at start.
    assert period_window(p, zone, start - timedelta(microseconds=1), anchor=origin)[1] == start
