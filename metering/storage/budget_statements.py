"""The statements of ``storage.budget_batch``: SQLAlchemy Core over ``storage.models``,
compiled once per dialect and run on the DBAPI cursor (``storage.compiled``)."""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, insert, or_, select, update

from metering.storage.budget_rows import EACH_END_USER, END_USER, TAG, BudgetRow
from metering.storage.compiled import Sql, insert_for, table
from metering.storage.models import Budget, BudgetAlert, BudgetSettlement, Reservation

BUDGET_COLUMNS = tuple(f.name for f in fields(BudgetRow))
OWNER_KINDS = ("key", "team", "customer")


@functools.cache
def lock_statement(
    keys: bool,
    teams: bool,
    customers: bool,
    held: bool,
    alerted: bool = False,
    tags: bool = False,
    end_users: bool = False,
) -> Sql:
    """Budgets of these owner kinds (and those holding reservations of ``held``), by id.

    ``alerted``: one more column, whether the budget has an alert (a settlement then
    looks for crossed thresholds; without, alerts cost it nothing more). ``tags``: the
    budgets of the ``tag_names``; ``end_users``: those of the ``end_user_ids`` in the
    ``end_user_scopes`` and the default end-user budgets of those scopes (a request or
    record without either runs the statement without these clauses)."""

    def build(postgres: bool) -> Any:
        b, r = table(Budget), table(Reservation)
        clauses = [
            and_(
                b.c.owner_type == bindparam(f"{kind}_type"),
                b.c.owner_id.in_(bindparam(f"{kind}_ids", expanding=True)),
            )
            for kind, wanted in zip(OWNER_KINDS, (keys, teams, customers), strict=True)
            if wanted
        ]
        if held:
            holding = select(r.c.budget_id).where(
                r.c.request_id.in_(bindparam("held", expanding=True))
            )
            clauses.append(b.c.id.in_(holding))
        if tags:  # the unique constraint's index: (owner_type, owner_id, scope, subject, …)
            clauses.append(
                and_(
                    b.c.owner_type == TAG,
                    b.c.owner_id == 0,
                    b.c.scope == "",
                    b.c.subject.in_(bindparam("tag_names", expanding=True)),
                )
            )
        if end_users:
            scopes = b.c.scope.in_(bindparam("end_user_scopes", expanding=True))
            clauses.append(
                and_(
                    b.c.owner_type == END_USER,
                    b.c.owner_id == 0,
                    scopes,
                    b.c.subject.in_(bindparam("end_user_ids", expanding=True)),
                )
            )
            clauses.append(
                and_(b.c.owner_type == EACH_END_USER, b.c.owner_id == 0, scopes, b.c.subject == "")
            )
        columns: list[Any] = [b.c[name] for name in BUDGET_COLUMNS]
        if alerted:
            a = table(BudgetAlert)
            columns.append(exists().where(a.c.budget_id == b.c.id).label("alerted"))
        query = select(*columns).where(or_(*clauses))
        query = query.order_by(b.c.id)
        return query.with_for_update() if postgres else query

    return Sql(build)


def _save(postgres: bool) -> Any:
    b = table(Budget)
    changed = ("period_start", "spent_nano", "reserved_nano", "soft_crossed_at", "updated_at")
    values: dict[Any, Any] = {b.c[name]: bindparam(f"new_{name}") for name in changed}
    return update(b).where(b.c.id == bindparam("budget_id")).values(values)


def _release_expired(postgres: bool) -> Any:
    r = table(Reservation)
    expired = r.c.budget_id.in_(bindparam("ids", expanding=True))
    condition = and_(expired, r.c.expires_at <= bindparam("now"))
    return delete(r).where(condition).returning(r.c.budget_id, r.c.amount_nano)


def _taken(postgres: bool) -> Any:
    r = table(Reservation)
    return select(r.c.request_id).where(r.c.request_id.in_(bindparam("ids", expanding=True)))


def _reserve(postgres: bool) -> Any:
    r = table(Reservation)
    return insert(r).values({name: bindparam(name) for name in RESERVATION_COLUMNS}).inline()


def _drop_held(postgres: bool) -> Any:
    r = table(Reservation)
    held = r.c.request_id.in_(bindparam("ids", expanding=True))
    return delete(r).where(held).returning(r.c.budget_id, r.c.amount_nano)


def _settlement_marker(postgres: bool) -> Any:
    s = table(BudgetSettlement)
    values: dict[str, Any] = {
        "request_id": bindparam("request_id"),
        "settled_at": bindparam("settled_at"),
    }
    marker = insert_for(postgres, s).values(values)
    return marker.on_conflict_do_nothing(index_elements=["request_id"]).returning(s.c.request_id)


RESERVATION_COLUMNS = ("request_id", "budget_id", "amount_nano", "created_at", "expires_at")
SAVE = Sql(_save)
RELEASE_EXPIRED = Sql(_release_expired)
TAKEN = Sql(_taken)
RESERVE = Sql(_reserve, rows=True)
DROP_HELD = Sql(_drop_held)
MARK_SETTLED = Sql(_settlement_marker, rows=True)
