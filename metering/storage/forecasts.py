"""The recent spend that budget forecasts need, read from the daily rollups (one grouped
query per owner kind), and the forecasts of budget statuses (``core.forecast``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import Connection, func, select

from metering.core.forecast import Forecast, RecentSpend, forecast, lookback_start
from metering.core.model_patterns import budget_covers
from metering.storage.models import DailyRollup

_OWNER_COLUMN = {
    "key": DailyRollup.key_id,
    "team": DailyRollup.team_id,
    "customer": DailyRollup.customer_id,
}


def recent_spend(
    conn: Connection, owners: Iterable[tuple[str, int, str]], *, now: datetime
) -> dict[tuple[str, int, str], RecentSpend]:
    """Each ``(owner kind, owner id, model pattern)``'s spend in the rollups from
    ``lookback_start(now)`` on, from its first day there (a pattern counts the models it
    covers, ``core.model_patterns``: the rule of its counters); those without any are
    absent."""
    since = lookback_start(now)
    by_kind: dict[str, set[tuple[int, str]]] = {}
    for kind, owner_id, pattern in owners:
        by_kind.setdefault(kind, set()).add((owner_id, pattern))
    found: dict[tuple[str, int, str], RecentSpend] = {}
    for kind, wanted in by_kind.items():
        column = _OWNER_COLUMN[kind]
        ids = sorted({owner_id for owner_id, _ in wanted})
        rows = conn.execute(
            select(
                column,
                DailyRollup.provider,
                DailyRollup.model,
                func.sum(DailyRollup.total_cost),
                func.min(DailyRollup.day),
            )
            .where(column.in_(ids), DailyRollup.day >= since.date())
            .group_by(column, DailyRollup.provider, DailyRollup.model)
        ).all()
        for owner_id, pattern in wanted:
            amount, first_day = 0, None
            for row_owner, provider, model, spent, first in rows:
                if row_owner != owner_id or not budget_covers(pattern, f"{provider}/{model}"):
                    continue
                amount += int(spent or 0)
                day = _day(first)
                first_day = day if first_day is None else min(first_day, day)
            if first_day is not None:
                start = _midnight(first_day)
                found[(kind, owner_id, pattern)] = RecentSpend(amount, max(since, start))
    return found


def _day(day: date | str) -> date:
    return date.fromisoformat(day) if isinstance(day, str) else day  # SQLite: MIN() is text


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def budget_forecasts(
    conn: Connection,
    budgets: Iterable[tuple[str, int, str, int, int, tuple[datetime, datetime | None], str]],
    *,
    now: datetime,
) -> list[Forecast]:
    """Forecasts for ``(owner_type, owner_id, model_pattern, limit_nano, spent_nano,
    window, timezone)`` tuples, in their order."""
    items = list(budgets)
    recent = recent_spend(conn, [(kind, oid, pattern) for kind, oid, pattern, *_ in items], now=now)
    return [
        forecast(
            limit_nano=limit_nano,
            spent_nano=spent_nano,
            window=window,
            now=now,
            timezone=zone,
            recent=recent.get((kind, owner_id, pattern)),
        )
        for kind, owner_id, pattern, limit_nano, spent_nano, window, zone in items
    ]
