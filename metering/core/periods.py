"""Budget periods: which window of time a budget's spend belongs to (pure, no I/O).

Every datetime in and out is *naive UTC* (what the database stores); time zones
only decide where calendar boundaries fall.

Periods
    ``daily``, ``weekly`` (Monday 00:00), ``monthly`` (the 1st), ``yearly`` (1 January):
        calendar windows in the budget's IANA zone. A local day is 23 or 25 hours
        long across a DST change; a local midnight that does not exist starts the
        day at the first instant after the gap.
    ``Nh`` (N ≥ 1): consecutive windows of exactly N elapsed hours.
    ``Nd`` (N ≥ 1): consecutive windows of N local calendar days (midnight to midnight).
    ``never``: one lifetime window, from the epoch with no end (a prepaid budget
        counts every record of its owner).

Rolling windows are tumbling, not sliding: they lie on a lattice anchored at the
budget's ``anchor`` (its ``period_start``; when a budget gets a rolling period,
the moment it is set, floored to the local hour for ``Nh`` and to local midnight
for ``Nd``). Because every window start is again on the lattice, anchoring at the
current ``period_start`` always yields the same windows, and each new window
starts from zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metering.errors import InvalidInput

PeriodKind = Literal["daily", "weekly", "monthly", "yearly", "hours", "days", "never"]

EPOCH = datetime(1970, 1, 1)
CALENDAR = ("daily", "weekly", "monthly", "yearly")
_ROLLING = re.compile(r"^([1-9][0-9]{0,5})([hd])$")
_HINT = "use daily, weekly, monthly, yearly, Nh or Nd (N ≥ 1, e.g. 12h, 7d) or never"


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    count: int = 1

    def __str__(self) -> str:
        if self.kind == "hours":
            return f"{self.count}h"
        if self.kind == "days":
            return f"{self.count}d"
        return self.kind

    @property
    def rolling(self) -> bool:
        return self.kind in ("hours", "days")


def parse_period(text: str) -> Period:
    """``daily`` | ``weekly`` | ``monthly`` | ``yearly`` | ``Nh`` | ``Nd`` | ``never``."""
    if not isinstance(text, str):
        raise InvalidInput(f"period {text!r} is not text; {_HINT}")
    value = text.strip().lower()
    if value in CALENDAR or value == "never":
        return Period(value)  # type: ignore[arg-type]  # narrowed by the membership test
    match = _ROLLING.match(value)
    if match is None:
        raise InvalidInput(f"unknown budget period {text!r}; {_HINT}")
    return Period("hours" if match.group(2) == "h" else "days", int(match.group(1)))


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA zone (``Europe/Berlin``); clear error otherwise."""
    try:
        if not name or name.strip() != name or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as UTC, Europe/Berlin "
            "or America/New_York"
        ) from None


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else parse_timezone(tz)


def _to_local(at: datetime, zone: ZoneInfo) -> datetime:
    if at.tzinfo is not None:
        raise ValueError("period arithmetic takes naive UTC datetimes")
    return at.replace(tzinfo=UTC).astimezone(zone)


def local_midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (naive UTC) of local calendar ``day`` in ``zone``.

    ``fold=0`` of an ambiguous midnight is its first occurrence; a midnight inside
    a DST gap maps (fold=0: the offset before the gap) to the instant the gap ends.
    """
    local = datetime(day.year, day.month, day.day, tzinfo=zone)
    return local.astimezone(UTC).replace(tzinfo=None)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _calendar_days(kind: PeriodKind, local_day: date) -> tuple[date, date]:
    if kind == "daily":
        return local_day, local_day + timedelta(days=1)
    if kind == "weekly":
        start = local_day - timedelta(days=local_day.weekday())
        return start, start + timedelta(days=7)
    if kind == "monthly":
        start = local_day.replace(day=1)
        return start, _add_months(start, 1)
    start = date(local_day.year, 1, 1)
    return start, date(local_day.year + 1, 1, 1)


def rolling_anchor(period: Period, tz: str | ZoneInfo, at: datetime) -> datetime:
    """Where a rolling period's lattice starts when it is set at ``at``."""
    zone = _zone(tz)
    local = _to_local(at, zone)
    if period.kind == "days":
        return local_midnight_utc(local.date(), zone)
    offset = timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    return at - offset


def period_window(
    period: Period, tz: str | ZoneInfo, at: datetime, *, anchor: datetime | None = None
) -> tuple[datetime, datetime | None]:
    """The window ``[start, end)`` containing ``at`` (naive UTC); ``end`` is None for never.

    Rolling periods need ``anchor``, the origin of their lattice (the budget's current
    ``period_start``; ``initial_window`` picks it when the period is set); calendar
    periods ignore it.
    """
    zone = _zone(tz)
    if period.kind == "never":
        return EPOCH, None
    if period.kind in CALENDAR:
        first, after = _calendar_days(period.kind, _to_local(at, zone).date())
        return local_midnight_utc(first, zone), local_midnight_utc(after, zone)
    if anchor is None:
        raise ValueError(f"a rolling period ({period}) needs an anchor")
    if period.kind == "hours":
        length = timedelta(hours=period.count)
        start = anchor + ((at - anchor) // length) * length
        return start, start + length
    base_day = _to_local(anchor, zone).date()
    k = (_to_local(at, zone).date() - base_day).days // period.count
    first_day = base_day + timedelta(days=k * period.count)
    last_day = first_day + timedelta(days=period.count)
    return local_midnight_utc(first_day, zone), local_midnight_utc(last_day, zone)


def initial_window(
    period: Period, tz: str | ZoneInfo, now: datetime
) -> tuple[datetime, datetime | None]:
    """The window a budget starts in when it gets ``period`` at ``now``."""
    anchor = rolling_anchor(period, tz, now) if period.rolling else None
    return period_window(period, tz, now, anchor=anchor)


def contains(window: tuple[datetime, datetime | None], at: datetime) -> bool:
    start, end = window
    return start <= at and (end is None or at < end)
