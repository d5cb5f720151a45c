"""The recent spend that budget forecasts need, read from the daily rollups (one grouped
query per owner kind), and the forecasts of budget statuses (``core.forecast``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from metering.core.forecast import Forecast, RecentSpend, forecast, lookback_start
from metering.core.model_patterns import budget_covers
from metering.storage.budget_rows import EACH_END_USER, END_USER, TAG
from metering.storage.models import DailyEndUserRollup, DailyRollup, DailyTagRollup

_OWNER_COLUMN = {
    "key": DailyRollup.key_id,
    "team": DailyRollup.team_id,
    "customer": DailyRollup.customer_id,
}


# (owner_type, owner_id, scope, subject, model_pattern): what names a budget
BudgetIdentity = tuple[str, int, str, str, str]


def recent_spend(
    conn: Connection, budgets: Iterable[BudgetIdentity], *, now: datetime
) -> dict[BudgetIdentity, RecentSpend]:
    """Each budget's spend in the rollups from ``lookback_start(now)`` on, from its first
    day there: its owner's (a tag's: ``daily_tag_rollups``; an end user's:
    ``daily_end_user_rollups``), of the models its pattern covers (``core.model_patterns``:
    the rule of its counters); those without any (and defaults) are absent."""
    since = lookback_start(now)
    found: dict[BudgetIdentity, RecentSpend] = {}
    wanted = sorted(set(budgets))
    groups: dict[tuple[str, ...], list[BudgetIdentity]] = {}
    for identity in wanted:
        groups.setdefault(_source(identity), []).append(identity)
    for source, identities in groups.items():
        rows = _daily_by_model(conn, source, identities, since=since)
        for identity in identities:
            amount, first_day = 0, None
            for who, provider, model, spent, first in rows:
                if who != _who(identity) or not budget_covers(identity[4], f"{provider}/{model}"):
                    continue
                amount += int(spent or 0)
                day = _day(first)
                first_day = day if first_day is None else min(first_day, day)
            if first_day is not None:
                found[identity] = RecentSpend(amount, max(since, _midnight(first_day)))
    return found


def _source(identity: BudgetIdentity) -> tuple[str, ...]:
    return (identity[0],)


def _who(identity: BudgetIdentity) -> Any:
    kind, owner_id, scope, subject, _ = identity
    if kind == TAG:
        return subject
    if kind == END_USER:
        return (scope, subject)
    return owner_id


def _daily_by_model(
    conn: Connection, source: tuple[str, ...], identities: list[BudgetIdentity], *, since: datetime
) -> list[Any]:
    """(owner, provider, model, spend, first day) rows of these budgets' owners."""
    kind = source[0]
    if kind == EACH_END_USER:
        return []
    if kind == TAG:
        t = DailyTagRollup
        who: list[Any] = [t.tag]
        where = [t.tag.in_(sorted({i[3] for i in identities})), t.day >= since.date()]
        table: Any = t
    elif kind == END_USER:
        e = DailyEndUserRollup
        who = [e.end_user_scope, e.end_user]
        where = [
            e.end_user_scope.in_(sorted({i[2] for i in identities})),
            e.end_user.in_(sorted({i[3] for i in identities})),
            e.day >= since.date(),
        ]
        table = e
    else:
        column = _OWNER_COLUMN[kind]
        who, table = [column], DailyRollup
        where = [column.in_(sorted({i[1] for i in identities})), DailyRollup.day >= since.date()]
    query = (
        select(*who, table.provider, table.model, func.sum(table.total_cost), func.min(table.day))
        .where(*where)
        .group_by(*who, table.provider, table.model)
    )
    rows = conn.execute(query).all()
    if len(who) == 2:  # an end user: its scope and id together
        return [((r[0], r[1]), *r[2:]) for r in rows]
    return list(rows)


def _day(day: date | str) -> date:
    return date.fromisoformat(day) if isinstance(day, str) else day  # SQLite: MIN() is text


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def budget_forecasts(
    conn: Connection,
    budgets: Iterable[tuple[BudgetIdentity, int, int, tuple[datetime, datetime | None], str]],
    *,
    now: datetime,
) -> list[Forecast]:
    """Forecasts for ``(identity, limit_nano, spent_nano, window, timezone)`` tuples, in
    their order."""
    items = list(budgets)
    recent = recent_spend(conn, [identity for identity, *_ in items], now=now)
    return [
        forecast(
            limit_nano=limit_nano,
            spent_nano=spent_nano,
            window=window,
            now=now,
            timezone=zone,
            recent=recent.get(identity),
        )
        for identity, limit_nano, spent_nano, window, zone in items
    ]
