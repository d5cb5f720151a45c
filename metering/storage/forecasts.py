"""The recent spend that budget forecasts need, read from the daily rollups (one grouped
query per owner kind), and the forecasts of budget statuses (``core.forecast``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import Connection, func, select

from metering.core.forecast import Forecast, RecentSpend, forecast, lookback_start
from metering.storage.models import DailyRollup

_OWNER_COLUMN = {
    "key": DailyRollup.key_id,
    "team": DailyRollup.team_id,
    "customer": DailyRollup.customer_id,
}


def recent_spend(
    conn: Connection, owners: Iterable[tuple[str, int]], *, now: datetime
) -> dict[tuple[str, int], RecentSpend]:
    """Each owner's spend in the rollups from ``lookback_start(now)`` on, from its first
    day there; owners without any are absent."""
    since = lookback_start(now)
    by_kind: dict[str, set[int]] = {}
    for kind, owner_id in owners:
        by_kind.setdefault(kind, set()).add(owner_id)
    found: dict[tuple[str, int], RecentSpend] = {}
    for kind, ids in by_kind.items():
        column = _OWNER_COLUMN[kind]
        rows = conn.execute(
            select(column, func.sum(DailyRollup.total_cost), func.min(DailyRollup.day))
            .where(column.in_(sorted(ids)), DailyRollup.day >= since.date())
            .group_by(column)
        )
        for owner_id, amount, first_day in rows:
            first = _midnight(first_day)
            found[(kind, int(owner_id))] = RecentSpend(int(amount or 0), max(since, first))
    return found


def _midnight(day: date | str) -> datetime:
    if isinstance(day, str):  # SQLite's MIN() of a DATE column comes back as text
        day = date.fromisoformat(day)
    return datetime(day.year, day.month, day.day)


def budget_forecasts(
    conn: Connection,
    budgets: Iterable[tuple[str, int, int, int, tuple[datetime, datetime | None], str]],
    *,
    now: datetime,
) -> list[Forecast]:
    """Forecasts for ``(owner_type, owner_id, limit_nano, spent_nano, window, timezone)``
    tuples, in their order."""
    items = list(budgets)
    recent = recent_spend(conn, [(kind, owner_id) for kind, owner_id, *_ in items], now=now)
    return [
        forecast(
            limit_nano=limit_nano,
            spent_nano=spent_nano,
            window=window,
            now=now,
            timezone=zone,
            recent=recent.get((kind, owner_id)),
        )
        for kind, owner_id, limit_nano, spent_nano, window, zone in items
    ]
