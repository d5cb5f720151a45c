"""Budget rows under lock: locking order, period roll-over, spend from records, soft limits.

Internal to ``storage.budgets``. Every change to a budget's counters happens with
its row locked, budgets always locked in ascending id order (no deadlocks):
``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the transaction is made a write
transaction up front (``BEGIN IMMEDIATE``), so concurrent writers queue on the
busy timeout instead of failing with "database is locked".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from metering.core.budget import soft_limit_reached
from metering.core.model_patterns import budget_covers
from metering.core.money import format_usd
from metering.core.periods import parse_period, period_window
from metering.storage.compiled import Sql, table
from metering.storage.models import Budget, BudgetEvent, RecordTag, Reservation, UsageRecord
from metering.storage.raw_sql import run

log = logging.getLogger("metering.budgets")

SOFT_LIMIT_CROSSED = "soft_limit_crossed"
# Budgets of tags and end users (README, Budgets of end users and tags): owner_id 0;
# ``subject`` the tag or end-user id, ``scope`` the end users' "customer:<id>" | "key:<id>".
TAG, END_USER, EACH_END_USER = "tag", "end_user", "each_end_user"
SCOPED_KINDS = frozenset((TAG, END_USER, EACH_END_USER))
OWNER_RANK = {"key": 0, "team": 1, "customer": 2, END_USER: 3, TAG: 4, EACH_END_USER: 5}
_RECORD_OWNER = {
    "key": UsageRecord.key_id,
    "team": UsageRecord.team_id,
    "customer": UsageRecord.customer_id,
}


@dataclass(slots=True)
class BudgetRow:
    id: int
    owner_type: str
    owner_id: int
    scope: str
    subject: str
    model_pattern: str
    limit_nano: int
    period: str
    timezone: str
    soft_pct: int | None
    period_start: datetime
    spent_nano: int
    reserved_nano: int
    soft_crossed_at: datetime | None

    @classmethod
    def from_mapping(cls, data: Any) -> BudgetRow:
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def window_at(self, at: datetime) -> tuple[datetime, datetime | None]:
        """The window of this budget's period containing ``at``."""
        period = parse_period(self.period)
        return period_window(period, self.timezone, at, anchor=self.period_start)

    @property
    def window(self) -> tuple[datetime, datetime | None]:
        """The stored window: the one starting at ``period_start``."""
        return self.window_at(self.period_start)


def insert_stmt(conn: Connection, model: Any) -> Any:
    """A dialect INSERT that supports ``on_conflict_do_nothing``."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(model)


def _touch(postgres: bool) -> Any:
    """A write that changes no row (``begin_write``)."""
    b = table(Budget)
    return update(b).values({b.c.id: b.c.id}).where(false())


_TOUCH = Sql(_touch)


def begin_write(conn: Connection) -> None:
    """SQLite: turn the transaction into a write transaction now (``BEGIN IMMEDIATE``).

    Reads of a deferred transaction that later writes fail with "database is locked"
    when another writer committed in between; taking the write lock first makes
    concurrent writers wait on the busy timeout instead. A transaction that has
    already written holds the lock. PostgreSQL locks rows instead (``lock_budgets``).

    SQLite grants ``BEGIN IMMEDIATE`` even on a read-only database, so a write that
    touches no row follows: a database that reads but cannot write fails here, before
    anything is sent upstream (fail closed), not after the upstream has served.
    """
    if conn.dialect.name != "sqlite":
        return
    dbapi = conn.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction:
        run(conn, "BEGIN IMMEDIATE")
        run(conn, _TOUCH.text(False))


def applicable_budget_ids(
    conn: Connection, *, key_id: int | None, team_id: int | None, customer_id: int | None
) -> list[int]:
    owners = [("key", key_id), ("team", team_id), ("customer", customer_id)]
    conditions = [
        (Budget.owner_type == kind) & (Budget.owner_id == owner_id)
        for kind, owner_id in owners
        if owner_id is not None
    ]
    if not conditions:
        return []
    query = select(Budget.id).where(or_(*conditions)).order_by(Budget.id)
    return [int(i) for i in conn.execute(query).scalars()]


def lock_budgets(conn: Connection, ids: Iterable[int]) -> list[BudgetRow]:
    """Lock the budgets (ascending id) for the rest of the transaction; their rows."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    begin_write(conn)
    query = select(Budget.__table__).where(Budget.id.in_(wanted)).order_by(Budget.id)
    rows = conn.execute(query.with_for_update()).mappings().all()
    return [BudgetRow.from_mapping(r) for r in rows]


def load_budgets(conn: Connection, ids: Sequence[int] | None = None) -> list[BudgetRow]:
    """Budget rows without locking (listings, checks)."""
    query = select(Budget.__table__).order_by(Budget.id)
    if ids is not None:
        query = query.where(Budget.id.in_(sorted(set(ids))))
    return [BudgetRow.from_mapping(r) for r in conn.execute(query).mappings()]


def recorded_spend(
    conn: Connection,
    *,
    owner_type: str,
    owner_id: int,
    window: tuple[datetime, datetime | None],
    model_pattern: str = "",
    scope: str = "",
    subject: str = "",
    exclude_request_id: str | None = None,
) -> int:
    """Sum of ``total_cost`` of the budget's records that started inside ``window``: the
    owner's (a tag's: those carrying it; an end user's: its id in its scope; a default
    end-user budget holds none), of those served by a model ``model_pattern`` covers
    (``core.model_patterns``)."""
    if owner_type == EACH_END_USER:
        return 0
    start, end = window
    total = func.coalesce(func.sum(UsageRecord.total_cost), 0)
    conditions = [*_owner_condition(owner_type, owner_id, scope, subject)]
    conditions.append(UsageRecord.started_at >= start)
    if end is not None:
        conditions.append(UsageRecord.started_at < end)
    if exclude_request_id is not None:
        conditions.append(UsageRecord.request_id != exclude_request_id)
    if not model_pattern:
        return int(conn.execute(select(total).where(*conditions)).scalar_one())
    by_model = select(UsageRecord.provider, UsageRecord.model, total).where(*conditions)
    groups = conn.execute(by_model.group_by(UsageRecord.provider, UsageRecord.model))
    return sum(
        int(amount)
        for provider, model, amount in groups
        if budget_covers(model_pattern, f"{provider}/{model}")
    )


def row_spend(
    conn: Connection,
    row: BudgetRow,
    window: tuple[datetime, datetime | None],
    *,
    exclude_request_id: str | None = None,
) -> int:
    """``recorded_spend`` of this budget's records in ``window``."""
    return recorded_spend(
        conn,
        owner_type=row.owner_type,
        owner_id=row.owner_id,
        window=window,
        model_pattern=row.model_pattern,
        scope=row.scope,
        subject=row.subject,
        exclude_request_id=exclude_request_id,
    )


def _owner_condition(owner_type: str, owner_id: int, scope: str, subject: str) -> list[Any]:
    if owner_type == TAG:
        tagged = select(RecordTag.record_id).where(RecordTag.tag == subject)
        return [UsageRecord.id.in_(tagged)]
    if owner_type == END_USER:
        return [UsageRecord.end_user_scope == scope, UsageRecord.end_user == subject]
    return [_RECORD_OWNER[owner_type] == owner_id]


def reserved_total(conn: Connection, budget_id: int) -> int:
    query = select(func.coalesce(func.sum(Reservation.amount_nano), 0)).where(
        Reservation.budget_id == budget_id
    )
    return int(conn.execute(query).scalar_one())


def soft_event_at(conn: Connection, budget_id: int, period_start: datetime) -> datetime | None:
    query = select(BudgetEvent.at).where(
        BudgetEvent.budget_id == budget_id,
        BudgetEvent.kind == SOFT_LIMIT_CROSSED,
        BudgetEvent.period_start == period_start,
    )
    found = conn.execute(query).scalar()
    return found if isinstance(found, datetime) else None


def start_window(
    conn: Connection,
    row: BudgetRow,
    window: tuple[datetime, datetime | None],
    *,
    now: datetime,
    exclude_request_id: str | None = None,
) -> None:
    """Move ``row`` (locked) to ``window``: spent = its records there, soft state of it."""
    row.period_start = window[0]
    row.spent_nano = row_spend(conn, row, window, exclude_request_id=exclude_request_id)
    row.soft_crossed_at = soft_event_at(conn, row.id, row.period_start)
    note_soft_limit(conn, row, now=now)


def roll_forward(
    conn: Connection, row: BudgetRow, *, now: datetime, exclude_request_id: str | None = None
) -> bool:
    """If the stored window ended before ``now``, start the current one (from its records).

    ``exclude_request_id``: a record inserted by the caller's own transaction whose cost
    the caller adds itself. Never moves a window backwards (a clock behind ours)."""
    window = row.window_at(now)
    if window[0] <= row.period_start:
        return False
    start_window(conn, row, window, now=now, exclude_request_id=exclude_request_id)
    return True


def note_soft_limit(conn: Connection, row: BudgetRow, *, now: datetime) -> bool:
    """Record the first soft-limit crossing of the current period (once); True if new."""
    if row.soft_crossed_at is not None or not soft_limit_reached(
        limit_nano=row.limit_nano, soft_pct=row.soft_pct, spent_nano=row.spent_nano
    ):
        return False
    stmt = (
        insert_stmt(conn, BudgetEvent)
        .values(
            budget_id=row.id,
            kind=SOFT_LIMIT_CROSSED,
            period_start=row.period_start,
            at=now,
            spent_nano=row.spent_nano,
            limit_nano=row.limit_nano,
        )
        .on_conflict_do_nothing(index_elements=["budget_id", "kind", "period_start"])
        .returning(BudgetEvent.id)
    )
    inserted = conn.execute(stmt).first() is not None
    row.soft_crossed_at = now if inserted else soft_event_at(conn, row.id, row.period_start)
    if inserted:
        log.warning(
            "soft limit crossed: %s budget of %s %s spent $%s of $%s (%d%% soft limit) "
            "in the period starting %s",
            row.owner_type,
            row.owner_type,
            repr(row.subject) if row.subject else f"#{row.owner_id}",
            format_usd(row.spent_nano),
            format_usd(row.limit_nano),
            row.soft_pct,
            row.period_start.isoformat(),
        )
    return inserted


def save_counters(conn: Connection, row: BudgetRow, *, now: datetime) -> None:
    conn.execute(
        update(Budget)
        .where(Budget.id == row.id)
        .values(
            period_start=row.period_start,
            spent_nano=row.spent_nano,
            reserved_nano=row.reserved_nano,
            soft_crossed_at=row.soft_crossed_at,
            updated_at=now,
        )
    )
