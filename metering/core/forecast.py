"""Budget forecasts, pure: the spend a budget's period will end with at the current rate,
and when its limit would be reached (README, Forecasts). No I/O: ``storage.forecasts``
reads the recent spend from the daily rollups.

The method, in the budget's own period (its window ``[start, end)`` in naive UTC, as
``core.periods`` computes it in the budget's zone, so a month that changes DST, a
December or a rolling ``36h`` window has its real length):

1. **Rate.** Once ``IN_PERIOD_AFTER`` % of a window with an end has passed, the period's
   own average: spent so far / time elapsed in it (the rate the alerts' ``--forecast``
   uses). Before that, and for ``never``, the *recent* rate: the owner's spend in the
   daily rollups of the last ``LOOKBACK_DAYS`` UTC days and today so far, over that time
   (from the owner's first day in it, if later; at least ``MIN_RATE_SPAN``).
2. **Projection.** spent + rate × (end − now), rounded down to the nano-dollar; none for a
   period without an end.
3. **Limit day.** The instant spent + rate × t reaches the limit, shown as the day in the
   budget's zone; now when it has been reached already; none when the rate is zero or the
   instant falls after the period's end (the limit is not reached in this period) or
   more than a century away.

Everything is exact integer arithmetic in nano-USD and microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from metering.core.money import format_usd
from metering.core.periods import parse_timezone

IN_PERIOD_AFTER = 10  # % of a window that must have passed before its own rate is used
LOOKBACK_DAYS = 7  # whole UTC days before today that the recent rate looks at
MIN_RATE_SPAN = timedelta(days=1)  # a recent rate is never taken over less time than this
HORIZON = timedelta(days=100 * 366)  # a limit day further away than this is not shown
_US = timedelta(microseconds=1)
_DAY_US = timedelta(days=1) // _US


@dataclass(frozen=True, slots=True)
class Rate:
    """``amount_nano`` spent over ``span_us`` microseconds (kept as a fraction: exact)."""

    amount_nano: int
    span_us: int
    basis: str  # period | recent

    def over(self, us: int) -> int:
        """The spend over ``us`` microseconds at this rate, rounded down."""
        return self.amount_nano * us // self.span_us

    @property
    def per_day_nano(self) -> int:
        return self.over(_DAY_US)


@dataclass(frozen=True, slots=True)
class RecentSpend:
    """An owner's spend in the daily rollups from ``since`` (a UTC midnight) until now."""

    amount_nano: int
    since: datetime


@dataclass(frozen=True, slots=True)
class Forecast:
    projected_nano: int | None  # spend at the end of the period; None: the period never ends
    limit_reached_at: datetime | None  # naive UTC; None: not in this period (or no spend)
    limit_reached_on: date | None  # that instant's day in the budget's zone
    rate: Rate | None  # None: nothing to go on (no spend in the period or recently)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "forecast": None if self.projected_nano is None else format_usd(self.projected_nano),
            "limit_reached_on": (
                None if self.limit_reached_on is None else self.limit_reached_on.isoformat()
            ),
            "daily_rate": None if self.rate is None else format_usd(self.rate.per_day_nano),
            "forecast_basis": None if self.rate is None else self.rate.basis,
        }


def lookback_start(now: datetime) -> datetime:
    """The first instant the recent rate looks at: midnight UTC ``LOOKBACK_DAYS`` ago."""
    today = datetime(now.year, now.month, now.day)
    return today - timedelta(days=LOOKBACK_DAYS)


def period_rate(
    *, spent_nano: int, window: tuple[datetime, datetime | None], now: datetime
) -> Rate | None:
    """The period's own average rate, once ``IN_PERIOD_AFTER`` % of it has passed."""
    start, end = window
    if end is None or now >= end:
        return None
    total = (end - start) // _US
    elapsed = (now - start) // _US
    if elapsed <= 0 or elapsed * 100 < total * IN_PERIOD_AFTER:
        return None
    return Rate(spent_nano, elapsed, "period")


def recent_rate(recent: RecentSpend | None, *, now: datetime) -> Rate | None:
    if recent is None or recent.amount_nano <= 0:
        return None
    span = max(now - recent.since, MIN_RATE_SPAN)
    return Rate(recent.amount_nano, span // _US, "recent")


def project_in_period(
    *, spent_nano: int, window: tuple[datetime, datetime | None], now: datetime
) -> int | None:
    """The spend the window ends with at its own rate so far (the alerts' forecast), or
    None: no end, or too early in it for a rate."""
    rate = period_rate(spent_nano=spent_nano, window=window, now=now)
    end = window[1]
    if rate is None or end is None:
        return None
    return spent_nano + rate.over((end - now) // _US)


def forecast(
    *,
    limit_nano: int,
    spent_nano: int,
    window: tuple[datetime, datetime | None],
    now: datetime,
    timezone: str | ZoneInfo,
    recent: RecentSpend | None,
) -> Forecast:
    """The forecast of one budget (see the module's docstring for the method)."""
    zone = timezone if isinstance(timezone, ZoneInfo) else parse_timezone(timezone)
    end = window[1]
    rate = period_rate(spent_nano=spent_nano, window=window, now=now) or recent_rate(
        recent, now=now
    )
    remaining_us = None if end is None else max(0, (end - now) // _US)
    if remaining_us is None:
        projected = None
    else:
        projected = spent_nano + (0 if rate is None else rate.over(remaining_us))
    reached_at: datetime | None
    if spent_nano >= limit_nano:
        reached_at = now
    elif rate is None or rate.amount_nano <= 0:
        reached_at = None
    else:
        needed = limit_nano - spent_nano
        # The first microsecond at which rate × t ≥ needed: ceil(needed × span / amount).
        wait_us = -(-needed * rate.span_us // rate.amount_nano)
        if (remaining_us is not None and wait_us >= remaining_us) or wait_us > HORIZON // _US:
            reached_at = None
        else:
            reached_at = now + timedelta(microseconds=wait_us)
    reached_on = None
    if reached_at is not None:
        reached_on = reached_at.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone).date()
    return Forecast(projected, reached_at, reached_on, rate)
