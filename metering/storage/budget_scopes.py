"""Budgets of tags and end users, and the default end-user budget (README, Budgets of end
users and tags): which of them a request or record falls in, what the lock statement
reads for them, and a default's budgets created on first use.

A tag budget (``owner_type`` tag, ``subject`` the tag) counts every request carrying the
tag; an end-user budget (``end_user``, ``scope`` "customer:<id>" | "key:<id>" as on the
record, ``subject`` the end-user id) the requests of that end user; a default
(``each_end_user``, ``scope``) is never charged itself: the first request of an end user
of its scope creates that end user's own budget from it (``template_id``), in the
admission's transaction, while the default's row is locked.

Why that is safe under concurrency: every transaction that could create (admission) or
charge (a record's settlement) an end user's budget locks the defaults of its scope
first (``lock_statement``'s ``end_users`` clauses), so they queue on the default's row. A
creator inserts with ``ON CONFLICT DO NOTHING`` and locks whichever row won; it counts
its window's spend from the records committed, and a settlement that committed before
it is among them, one that locks after it finds the new budget (PostgreSQL: the second
lock of ``BatchSettlement.finish``). So one budget per end user and default, each
record counted once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, select

from metering.core.attribution import NO_ATTRIBUTION, Attribution, tags_of
from metering.core.model_patterns import budget_covers_any
from metering.core.periods import initial_window, parse_period
from metering.storage.budget_rows import (
    EACH_END_USER,
    END_USER,
    TAG,
    BudgetRow,
    insert_stmt,
    lock_budgets,
    roll_forward,
    start_window,
)
from metering.storage.models import Budget
from metering.storage.owners import owner_names

BUDGET_UNIQUE = ["owner_type", "owner_id", "scope", "subject", "model_pattern"]


class AttributedRecord(Protocol):
    @property
    def end_user(self) -> str | None: ...
    @property
    def end_user_scope(self) -> str | None: ...
    @property
    def tags(self) -> str | None: ...  # the record's column: sorted, comma-joined


def attribution_of(record: AttributedRecord) -> Attribution:
    """A record's end user and tags, as its request had them at admission."""
    if record.end_user is None and not record.tags:
        return NO_ATTRIBUTION
    return Attribution(record.end_user, record.end_user_scope, tags_of(record.tags))


def scoped_applies(row: BudgetRow, attribution: Attribution) -> bool:
    """Whether a tag or end-user budget counts a request of this attribution (a request
    without an end user is in no end-user budget; a default is in none)."""
    if row.owner_type == TAG:
        return row.subject in attribution.tags
    if row.owner_type == END_USER:
        return attribution.end_user == row.subject and attribution.end_user_scope == row.scope
    return False


def lock_values(attributions: Iterable[Attribution]) -> dict[str, list[str]]:
    """The lock statement's ``tag_names``, ``end_user_ids`` and ``end_user_scopes`` (a
    list empty when no request has one: its clauses are then left out)."""
    tags: set[str] = set()
    users: set[str] = set()
    scopes: set[str] = set()
    for a in attributions:
        tags.update(a.tags)
        if a.end_user is not None and a.end_user_scope is not None:
            users.add(a.end_user)
            scopes.add(a.end_user_scope)
    return {
        "tag_names": sorted(tags),
        "end_user_ids": sorted(users),
        "end_user_scopes": sorted(scopes),
    }


def create_from_defaults(
    conn: Connection,
    rows: dict[int, BudgetRow],
    asks: Sequence[tuple[Attribution, Sequence[str]]],
    *,
    now: datetime,
) -> None:
    """For each (attribution, candidate models) whose end user has no budget yet from a
    default of its scope that covers a candidate: create it (locked, in ``rows``)."""
    defaults = [r for r in rows.values() if r.owner_type == EACH_END_USER]
    if not defaults:
        return
    have = {
        (r.scope, r.subject, r.model_pattern) for r in rows.values() if r.owner_type == END_USER
    }
    for attribution, models in asks:
        user, scope = attribution.end_user, attribution.end_user_scope
        if user is None or scope is None:
            continue
        for default in defaults:
            identity = (scope, user, default.model_pattern)
            if default.scope != scope or identity in have:
                continue
            if not budget_covers_any(default.model_pattern, models):
                continue
            row = _create(conn, default, user, now=now)
            rows[row.id] = row
            have.add(identity)


def _create(conn: Connection, default: BudgetRow, end_user: str, *, now: datetime) -> BudgetRow:
    values = {
        "owner_type": END_USER,
        "owner_id": 0,
        "scope": default.scope,
        "subject": end_user,
        "model_pattern": default.model_pattern,
        "limit_nano": default.limit_nano,
        "period": default.period,
        "timezone": default.timezone,
        "soft_pct": default.soft_pct,
        "period_start": now,
        "spent_nano": 0,
        "reserved_nano": 0,
        "template_id": default.id,
        "created_at": now,
        "updated_at": now,
    }
    stmt = (
        insert_stmt(conn, Budget)
        .values(values)
        .on_conflict_do_nothing(index_elements=BUDGET_UNIQUE)
        .returning(Budget.id)
    )
    created = conn.execute(stmt).scalar()
    if created is None:  # another transaction created it (and has committed)
        found = conn.execute(
            select(Budget.id).where(
                Budget.owner_type == END_USER,
                Budget.owner_id == 0,
                Budget.scope == default.scope,
                Budget.subject == end_user,
                Budget.model_pattern == default.model_pattern,
            )
        ).scalar_one()
        (row,) = lock_budgets(conn, [int(found)])
        roll_forward(conn, row, now=now)
        return row
    (row,) = lock_budgets(conn, [int(created)])
    window = initial_window(parse_period(row.period), row.timezone, now)
    start_window(conn, row, window, now=now)  # the end user's spend so far in it
    return row


def scope_of(owner_type: str, owner_id: int) -> str:
    """The scope string of a customer's or key's end users (``core.attribution``)."""
    return f"{owner_type}:{owner_id}"


def budget_names(conn: Connection, rows: Sequence[Any]) -> Mapping[int, tuple[str, str]]:
    """Each budget's (owner name, scope name) by id: a key's, team's or customer's name;
    a tag; an end-user id and "customer 'acme'" (or "key 'app'"); '' where none."""
    plain = [(r.owner_type, r.owner_id) for r in rows if r.owner_type not in _SCOPED_NAMES]
    scoped = {_split_scope(r.scope) for r in rows if r.owner_type in (END_USER, EACH_END_USER)}
    names = owner_names(conn, [*plain, *(s for s in scoped if s is not None)])
    out: dict[int, tuple[str, str]] = {}
    for r in rows:
        if r.owner_type == TAG:
            out[r.id] = (r.subject, "")
        elif r.owner_type in (END_USER, EACH_END_USER):
            where = _split_scope(r.scope)
            scope = f"{where[0]} '{names[where]}'" if where is not None else r.scope
            out[r.id] = (r.subject if r.owner_type == END_USER else "each end user", scope)
        else:
            out[r.id] = (names[(r.owner_type, r.owner_id)], "")
    return out


_SCOPED_NAMES = frozenset((TAG, END_USER, EACH_END_USER))


def _split_scope(scope: str) -> tuple[str, int] | None:
    kind, _, number = scope.partition(":")
    if kind in ("customer", "key") and number.isdigit():
        return kind, int(number)
    return None
