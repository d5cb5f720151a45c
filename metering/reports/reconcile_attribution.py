"""``metering reconcile``'s check of the attribution rollups (README, Attribution):
``daily_end_user_rollups`` and ``daily_tag_rollups`` against the records they sum (a
record once per end user, once per tag: '' for none), like ``check_rollups``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select

from metering.reports.common import DayWindow, Names, as_date, utc_day
from metering.reports.reconcile import CHECKED, _amount, _describe
from metering.storage.models import DailyEndUserRollup, DailyTagRollup, RecordTag, UsageRecord
from metering.storage.records import ROLLUP_SUMS

Sums = dict[tuple[Any, ...], list[int]]


def _key(row: Any, width: int) -> tuple[Any, ...]:
    day, key_id, team_id, customer_id, *rest = row[:width]
    return (as_date(day), int(key_id), int(team_id), int(customer_id), *rest)


def _records(conn: Connection, window: DayWindow, *, tags: bool) -> Sums:
    u = UsageRecord
    keys: list[Any] = [
        utc_day(conn, u.started_at),
        u.key_id,
        func.coalesce(u.team_id, 0),
        func.coalesce(u.customer_id, 0),
        u.provider,
        u.model,
        func.coalesce(u.end_user_scope, ""),
        func.coalesce(u.end_user, ""),
    ]
    source: Any = u.__table__
    if tags:
        keys.append(func.coalesce(RecordTag.tag, ""))
        source = source.outerjoin(RecordTag, RecordTag.record_id == u.id)
    sums = [
        func.count().label("requests"),
        func.sum(case((u.status == "success", 0), else_=1)).label("errors"),
        *(func.sum(getattr(u, c)).label(c) for c in ROLLUP_SUMS),
    ]
    query = (
        select(*keys, *sums)
        .select_from(source)
        .where(*window.where_instant(u.started_at))
        .group_by(*keys)
    )
    return {_key(r, len(keys)): [int(v or 0) for v in r[len(keys) :]] for r in conn.execute(query)}


def _rollup(conn: Connection, window: DayWindow, model: Any, *, tags: bool) -> Sums:
    r = model
    keys = [r.day, r.key_id, r.team_id, r.customer_id, r.provider, r.model]
    keys += [r.end_user_scope, r.end_user, *([r.tag] if tags else [])]
    query = select(*keys, *(getattr(r, c) for c in CHECKED)).where(*window.where_day(r.day))
    return {_key(row, len(keys)): [int(v) for v in row[len(keys) :]] for row in conn.execute(query)}


def check_attribution_rollups(conn: Connection, window: DayWindow, names: Names) -> list[str]:
    """One message per attribution rollup row that differs from the sums of its records."""
    problems = []
    for model, tags, what in (
        (DailyEndUserRollup, False, "end-user rollup"),
        (DailyTagRollup, True, "tag rollup"),
    ):
        records = _records(conn, window, tags=tags)
        rollups = _rollup(conn, window, model, tags=tags)
        zero = [0] * len(CHECKED)
        for key in sorted(set(records) | set(rollups), key=str):
            want_row, have_row = records.get(key, zero), rollups.get(key, zero)
            for column, want, have in zip(CHECKED, want_row, have_row, strict=True):
                if want != have:
                    where = _describe(key[:6], names).replace("rollup", what, 1)
                    who = f" end user {key[7]!r}" if key[7] else ""
                    tag = f" tag {key[8]!r}" if tags and key[8] else ""
                    problems.append(
                        f"{where}{who}{tag}: {column} is {_amount(column, have)} in the "
                        f"rollup but {_amount(column, want)} in the records"
                    )
    return problems
