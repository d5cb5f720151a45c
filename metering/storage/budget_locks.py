"""Which budgets a batch locks and which of them apply to a request or record (used by
``storage.budget_batch``; README, Budgets and limits).

``lock_owner_budgets`` / ``lock_records_budgets`` lock, in ascending id order, every
budget of the owners (key, team, customer), of their requests' end users and tags with
the defaults of those end users' scopes (``storage.budget_scopes``), and those holding
the batch's reservations; ``applicable`` is the one rule of which of them a request
(its candidate models) or a record (its served model) counts in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection

from metering.core.attribution import NO_ATTRIBUTION, Attribution
from metering.core.model_patterns import budget_covers_any
from metering.storage.budget_rows import OWNER_RANK, SCOPED_KINDS, BudgetRow, begin_write
from metering.storage.budget_scopes import attribution_of, lock_values, scoped_applies
from metering.storage.budget_statements import BUDGET_COLUMNS, OWNER_KINDS, lock_statement
from metering.storage.raw_sql import is_postgres, sqlite_datetime

Owners = tuple[int, int | None, int | None]  # key_id, team_id, customer_id


class Charged(Protocol):
    """What settling a record reads of it (a ``core.records.UsageRow`` is one)."""

    @property
    def request_id(self) -> str: ...
    @property
    def key_id(self) -> int: ...
    @property
    def team_id(self) -> int | None: ...
    @property
    def customer_id(self) -> int | None: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...  # served, with ``provider``: what a model pattern matches
    @property
    def started_at(self) -> datetime: ...
    @property
    def total_cost(self) -> int: ...
    @property
    def end_user(self) -> str | None: ...
    @property
    def end_user_scope(self) -> str | None: ...
    @property
    def tags(self) -> str | None: ...


def lock_owner_budgets(
    conn: Connection,
    owners: Sequence[Owners],
    *,
    held: Sequence[str] = (),
    attributions: Sequence[Attribution] = (),
) -> dict[int, BudgetRow]:
    """Lock (ascending id) the budgets of these owners (and of their requests' tags and
    end users, with the defaults of those end users' scopes), and those holding
    reservations of the ``held`` request ids; their rows by id."""
    return lock_budget_rows(conn, owners, held=held, alerted=False, attributions=attributions)[0]


def lock_budget_rows(
    conn: Connection,
    owners: Sequence[Owners],
    *,
    held: Sequence[str],
    alerted: bool,
    attributions: Sequence[Attribution] = (),
) -> tuple[dict[int, BudgetRow], frozenset[int]]:
    """``lock_owner_budgets``; with ``alerted``, also the ids of those with an alert (read
    by the same statement)."""
    begin_write(conn)
    keys = sorted({o[0] for o in owners})
    teams = sorted({o[1] for o in owners if o[1] is not None})
    customers = sorted({o[2] for o in owners if o[2] is not None})
    values: dict[str, Any] = {"held": held}
    for kind, ids in zip(OWNER_KINDS, (keys, teams, customers), strict=True):
        values[f"{kind}_type"], values[f"{kind}_ids"] = kind, ids
    if not (keys or teams or customers or held):
        return {}, frozenset()
    scoped = lock_values(attributions) if attributions else {}
    values.update(scoped)
    tags, end_users = bool(scoped.get("tag_names")), bool(scoped.get("end_user_ids"))
    lock = lock_statement(
        bool(keys), bool(teams), bool(customers), bool(held), alerted, tags, end_users
    )
    found = lock.run(conn, values)
    width = len(BUDGET_COLUMNS)
    rows = [BudgetRow(*r[:width]) for r in found]
    if not is_postgres(conn):
        for row in rows:
            row.period_start = sqlite_datetime(row.period_start) or row.period_start
            row.soft_crossed_at = sqlite_datetime(row.soft_crossed_at)
    with_alerts = frozenset(int(r[0]) for r in found if alerted and r[width])
    return {int(r.id): r for r in rows}, with_alerts


def lock_records_budgets(conn: Connection, records: Sequence[Charged]) -> dict[int, BudgetRow]:
    """Lock every budget these records' settlements touch: applicable to one of them,
    or holding one of their reservations."""
    return lock_records_with_alerts(conn, records)[0]


def lock_records_with_alerts(
    conn: Connection, records: Sequence[Charged]
) -> tuple[dict[int, BudgetRow], frozenset[int]]:
    owners = [owners_of(r) for r in records]
    held = [r.request_id for r in records]
    attributions = [attribution_of(r) for r in records]
    return lock_budget_rows(conn, owners, held=held, alerted=True, attributions=attributions)


def applicable(
    rows: Mapping[int, BudgetRow],
    owners: Owners,
    *,
    models: Sequence[str],
    attribution: Attribution = NO_ATTRIBUTION,
) -> list[BudgetRow]:
    """The rows that apply to a request of these owners (and of this end user and these
    tags), key → team → customer → end user → tag, by id: at admission ``models`` are its
    candidates (one covered is enough), at settlement the served model alone
    (``served``)."""
    key_id, team_id, customer_id = owners
    wanted = {("key", key_id), ("team", team_id), ("customer", customer_id)}
    found = [
        r
        for r in rows.values()
        if (
            (r.owner_type, r.owner_id) in wanted
            or (r.owner_type in SCOPED_KINDS and scoped_applies(r, attribution))
        )
        and budget_covers_any(r.model_pattern, models)
    ]
    return sorted(found, key=lambda r: (OWNER_RANK[r.owner_type], r.id))


def served(record: Charged) -> tuple[str]:
    """The model that served a record, as the one candidate ``applicable`` matches."""
    return (f"{record.provider}/{record.model}",)


def charged_rows(rows: Mapping[int, BudgetRow], record: Charged) -> list[BudgetRow]:
    """The budgets a record is charged to: its owners', end user's and tags', covering the
    model that served it."""
    attribution = attribution_of(record)
    return applicable(rows, owners_of(record), models=served(record), attribution=attribution)


def owners_of(record: Charged) -> Owners:
    return (record.key_id, record.team_id, record.customer_id)
