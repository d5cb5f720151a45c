"""Budget forecasts, pure (``core.forecast``): the documented method, DST and month ends,
exact limit instants, and agreement with the alerts' forecast."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.alerts import forecast_nano
from metering.core.forecast import (
    MIN_RATE_SPAN,
    RecentSpend,
    forecast,
    lookback_start,
    period_rate,
)
from metering.core.periods import initial_window, parse_period, period_window

USD = 1_000_000_000
US = timedelta(microseconds=1)


def window(period: str, zone: str, at: datetime) -> tuple[datetime, datetime | None]:
    return period_window(parse_period(period), zone, at)


def test_the_periods_own_rate_projects_to_its_end_and_finds_the_limit_day() -> None:
    w = window("monthly", "UTC", datetime(2026, 11, 16))
    assert w == (datetime(2026, 11, 1), datetime(2026, 12, 1))
    f = forecast(limit_nano=20 * USD, spent_nano=15 * USD, window=w,
                 now=datetime(2026, 11, 16), timezone="UTC", recent=None)  # fmt: skip
    assert f.rate is not None and f.rate.basis == "period"
    assert f.rate.per_day_nano == USD  # $15 over 15 days
    assert f.projected_nano == 30 * USD  # 30-day November
    assert f.limit_reached_at == datetime(2026, 11, 21)
    assert f.limit_reached_on == date(2026, 11, 21)
    assert f.as_dict() == {"forecast": "30", "limit_reached_on": "2026-11-21",
                           "daily_rate": "1", "forecast_basis": "period"}  # fmt: skip


def test_december_ends_on_the_first_of_january() -> None:
    now = datetime(2026, 12, 20)
    w = window("monthly", "UTC", now)
    assert w == (datetime(2026, 12, 1), datetime(2027, 1, 1))
    f = forecast(limit_nano=25 * USD, spent_nano=19 * USD, window=w, now=now,
                 timezone="UTC", recent=None)  # fmt: skip
    assert f.projected_nano == 31 * USD  # 19 days elapsed, 12 to go, $1 a day
    assert f.limit_reached_on == date(2026, 12, 26)
    beyond = forecast(limit_nano=40 * USD, spent_nano=19 * USD, window=w, now=now,
                      timezone="UTC", recent=None)  # fmt: skip
    assert beyond.projected_nano == 31 * USD
    assert beyond.limit_reached_at is None and beyond.limit_reached_on is None
    year = window("yearly", "UTC", now)
    assert year == (datetime(2026, 1, 1), datetime(2027, 1, 1))


def test_a_month_that_leaves_summer_time_has_745_hours() -> None:
    # Europe/Berlin leaves DST on 2026-10-25: the local month is 745 hours long.
    now = datetime(2026, 10, 16, 22)  # 384 hours after local midnight on 1 October
    w = window("monthly", "Europe/Berlin", now)
    assert w == (datetime(2026, 9, 30, 22), datetime(2026, 10, 31, 23))
    per_hour = 1_000_000
    f = forecast(limit_nano=10 * USD, spent_nano=384 * per_hour, window=w, now=now,
                 timezone="Europe/Berlin", recent=None)  # fmt: skip
    assert f.projected_nano == 745 * per_hour


def test_a_month_that_enters_summer_time_has_743_hours() -> None:
    now = datetime(2026, 3, 10, 23)  # 240 hours after local midnight on 1 March (CET)
    w = window("monthly", "Europe/Berlin", now)
    assert w == (datetime(2026, 2, 28, 23), datetime(2026, 3, 31, 22))
    f = forecast(limit_nano=10 * USD, spent_nano=240_000, window=w, now=now,
                 timezone="Europe/Berlin", recent=None)  # fmt: skip
    assert f.projected_nano == 743_000


def test_a_25_hour_day_and_the_limit_day_in_the_budgets_zone() -> None:
    # New York leaves DST on 2026-11-01: that local day is 25 hours long.
    now = datetime(2026, 11, 1, 9)  # 5 hours after local midnight (04:00 UTC)
    w = window("daily", "America/New_York", now)
    assert w == (datetime(2026, 11, 1, 4), datetime(2026, 11, 2, 5))
    f = forecast(limit_nano=USD, spent_nano=5 * 10_000_000, window=w, now=now,
                 timezone="America/New_York", recent=None)  # fmt: skip
    assert f.projected_nano == 25 * 10_000_000
    # $0.01 an hour reaches $0.20 at 20:00 local (00:00 UTC on the 2nd): the local day.
    g = forecast(limit_nano=20 * 10_000_000, spent_nano=5 * 10_000_000, window=w, now=now,
                 timezone="America/New_York", recent=None)  # fmt: skip
    assert g.limit_reached_at == datetime(2026, 11, 2, 0)
    assert g.limit_reached_on == date(2026, 11, 1)


def test_early_in_a_period_the_recent_rate_from_the_rollups_is_used() -> None:
    now = datetime(2026, 12, 2, 12)  # 1.5 of December's 31 days: under 10 %
    w = window("monthly", "UTC", now)
    assert period_rate(spent_nano=3 * USD, window=w, now=now) is None
    since = lookback_start(now)
    assert since == datetime(2026, 11, 25)
    recent = RecentSpend(15 * USD, since)  # $15 over 7.5 days: $2 a day
    f = forecast(limit_nano=100 * USD, spent_nano=3 * USD, window=w, now=now,
                 timezone="UTC", recent=recent)  # fmt: skip
    assert f.rate is not None and f.rate.basis == "recent"
    assert f.rate.per_day_nano == 2 * USD
    assert f.projected_nano == 3 * USD + 2 * USD * 29 + USD  # 29.5 days left
    assert f.limit_reached_on is None  # $63 by the end: not reached this period
    # A new owner: its first day in the rollups is today, and a rate needs a whole day.
    today = RecentSpend(3 * USD, datetime(2026, 12, 2))
    fresh = forecast(limit_nano=100 * USD, spent_nano=3 * USD, window=w, now=now,
                     timezone="UTC", recent=today)  # fmt: skip
    assert fresh.rate is not None
    assert fresh.rate.span_us == MIN_RATE_SPAN // US
    assert fresh.rate.per_day_nano == 3 * USD


def test_never_has_no_projection_but_a_limit_day() -> None:
    now = datetime(2026, 12, 3, 12)
    w = window("never", "UTC", now)
    assert w[1] is None
    f = forecast(limit_nano=10 * USD, spent_nano=4 * USD, window=w, now=now,
                 timezone="UTC", recent=RecentSpend(USD, datetime(2026, 12, 3)))  # fmt: skip
    assert f.projected_nano is None
    assert f.limit_reached_on == date(2026, 12, 9)  # $6 to go at $1 a day
    # A limit centuries away at a trickle is not shown (and does not overflow).
    far = forecast(limit_nano=10**18, spent_nano=0, window=w, now=now, timezone="UTC",
                   recent=RecentSpend(1, datetime(2026, 11, 26)))  # fmt: skip
    assert far.limit_reached_at is None and far.rate is not None


def test_nothing_to_go_on_and_already_reached() -> None:
    now = datetime(2026, 12, 2, 23, 30)
    w = window("monthly", "Europe/Berlin", now)
    none = forecast(limit_nano=USD, spent_nano=0, window=w, now=now,
                    timezone="Europe/Berlin", recent=None)  # fmt: skip
    assert none.rate is None and none.projected_nano == 0 and none.limit_reached_on is None
    assert none.as_dict()["daily_rate"] is None
    done = forecast(limit_nano=USD, spent_nano=USD, window=w, now=now,
                    timezone="Europe/Berlin", recent=None)  # fmt: skip
    assert done.limit_reached_at == now
    assert done.limit_reached_on == date(2026, 12, 3)  # 00:30 in Berlin


PERIODS = st.sampled_from(["daily", "weekly", "monthly", "yearly", "6h", "36h", "3d", "never"])
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
INSTANTS = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    period=PERIODS,
    zone=ZONES,
    set_at=INSTANTS,
    offset=st.integers(min_value=0, max_value=400 * 24 * 3600 * 10**6),
    spent=st.integers(min_value=0, max_value=10**12),
    limit=st.integers(min_value=1, max_value=10**13),
    recent=st.one_of(st.none(), st.integers(min_value=1, max_value=10**12)),
    since_days=st.integers(min_value=0, max_value=7),
)
def test_the_limit_instant_is_the_first_at_which_the_rate_reaches_the_limit(
    period: str, zone: str, set_at: datetime, offset: int, spent: int, limit: int,
    recent: int | None, since_days: int,
) -> None:  # fmt: skip
    p = parse_period(period)
    now = set_at + timedelta(microseconds=offset)
    anchor = initial_window(p, zone, set_at)[0]
    w = period_window(p, zone, now, anchor=anchor)
    since = lookback_start(now) + timedelta(days=since_days)
    f = forecast(limit_nano=limit, spent_nano=spent, window=w, now=now, timezone=zone,
                 recent=None if recent is None else RecentSpend(recent, since))  # fmt: skip
    # The alerts' forecast is this one whenever the period's own rate applies.
    if f.rate is not None and f.rate.basis == "period":
        assert forecast_nano(spent_nano=spent, window=w, now=now) == f.projected_nano
    else:
        assert forecast_nano(spent_nano=spent, window=w, now=now) is None
    if w[1] is None:
        assert f.projected_nano is None
    else:
        left_us = (w[1] - now) // US
        rate = 0 if f.rate is None else Fraction(f.rate.amount_nano, f.rate.span_us)
        exact = Fraction(spent) + rate * left_us
        assert f.projected_nano == int(exact)  # rounded down, to the nano-dollar
    if f.limit_reached_at is None:  # not reached in this period (or nothing to go on)
        assert spent < limit
        if f.rate is not None and w[1] is not None:
            left_us = (w[1] - now) // timedelta(microseconds=1)
            assert f.rate.amount_nano * (left_us - 1) < (limit - spent) * f.rate.span_us
        return
    if spent >= limit:
        assert f.limit_reached_at == now
        return
    assert f.rate is not None
    wait = (f.limit_reached_at - now) // timedelta(microseconds=1)
    needed = limit - spent
    assert f.rate.amount_nano * wait >= needed * f.rate.span_us
    assert f.rate.amount_nano * (wait - 1) < needed * f.rate.span_us
    if w[1] is not None:
        assert f.limit_reached_at < w[1]
