"""Set and remove budgets of every kind (re-exported by ``storage.budgets``).

A budget is named by its owner (``owner_type``, ``owner_id``: a key, team or customer;
0 for the others), its ``scope`` and ``subject`` (a tag; an end user of a scope; the
default of a scope's end users) and its ``model_pattern`` ('' = every model): one budget
per such identity (the unique constraint). Changing a default changes the budgets
created from it (``template_id``) with it; setting an end user's budget explicitly makes
it its own (a later change of the default leaves it alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from metering.core.attribution import check_end_user, check_tag
from metering.core.bounds import limit_problem
from metering.core.model_patterns import check_model_pattern
from metering.core.money import format_usd
from metering.core.periods import initial_window, parse_period, parse_timezone
from metering.errors import Conflict, InvalidInput, NotFound
from metering.storage.budget_rows import (
    EACH_END_USER,
    END_USER,
    TAG,
    BudgetRow,
    begin_write,
    lock_budgets,
    note_soft_limit,
    roll_forward,
    save_counters,
    start_window,
)
from metering.storage.models import Budget, BudgetEvent, Reservation
from metering.storage.owners import check_owner_type
from metering.storage.records import exclude_record_writers


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """What names one budget (see the module doc)."""

    owner_type: str
    owner_id: int = 0
    scope: str = ""
    subject: str = ""
    model_pattern: str = ""


def checked_key(key: BudgetKey) -> BudgetKey:
    """``key`` if it can name a budget, else InvalidInput saying why."""
    if key.model_pattern:
        check_model_pattern(key.model_pattern, option="--model")
    if key.owner_type == TAG:
        return BudgetKey(TAG, 0, "", check_tag(key.subject), key.model_pattern)
    if key.owner_type in (END_USER, EACH_END_USER):
        kind, _, number = key.scope.partition(":")
        if kind not in ("customer", "key") or not number.isdigit():
            raise InvalidInput(
                f"an end user's scope is customer:<id> or key:<id>, not {key.scope!r}"
            )
        if key.owner_type == EACH_END_USER:
            return BudgetKey(EACH_END_USER, 0, key.scope, "", key.model_pattern)
        user = check_end_user(key.subject)
        if user is None:
            raise InvalidInput("name the end user: --end-user ID (the id your application sends)")
        return BudgetKey(END_USER, 0, key.scope, user, key.model_pattern)
    check_owner_type(key.owner_type)
    if key.scope or key.subject:
        raise InvalidInput(f"a {key.owner_type} budget has no end user or tag")
    return key


def find_budget(conn: Connection, key: BudgetKey) -> int | None:
    found = conn.execute(
        select(Budget.id).where(
            Budget.owner_type == key.owner_type,
            Budget.owner_id == key.owner_id,
            Budget.scope == key.scope,
            Budget.subject == key.subject,
            Budget.model_pattern == key.model_pattern,
        )
    ).scalar()
    return None if found is None else int(found)


@dataclass(frozen=True, slots=True)
class Terms:
    limit_nano: int
    period: str
    timezone: str
    soft_pct: int | None


def _checked_terms(limit_nano: int, period: str, timezone: str, soft_pct: int | None) -> Terms:
    if limit_nano < 0:
        raise InvalidInput("a budget limit cannot be negative")
    problem = limit_problem(limit_nano)
    if problem is not None:
        raise InvalidInput(problem)
    if soft_pct is not None and not 1 <= soft_pct <= 100:
        raise InvalidInput(f"a soft limit is a percentage from 1 to 100, not {soft_pct}")
    period_text = str(parse_period(period))
    parse_timezone(timezone)
    return Terms(limit_nano, period_text, timezone, soft_pct)


def set_budget_of(
    conn: Connection,
    key: BudgetKey,
    *,
    limit_nano: int,
    period: str,
    timezone: str = "UTC",
    soft_pct: int | None = None,
    now: datetime,
) -> int:
    """Create or change one budget; its id. A new period or zone starts the window
    containing ``now``, with the spend of the records already in it; otherwise the
    current window and its spend are kept (a new limit applies from now on)."""
    key = checked_key(key)
    terms = _checked_terms(limit_nano, period, timezone, soft_pct)
    begin_write(conn)
    found = find_budget(conn, key)
    created = found is None
    if found is None:
        # Its window's spend is counted from the committed records: none may be in flight.
        exclude_record_writers(conn)
        values = {
            "owner_type": key.owner_type,
            "owner_id": key.owner_id,
            "scope": key.scope,
            "subject": key.subject,
            "model_pattern": key.model_pattern,
            "period_start": now,
            "spent_nano": 0,
            "reserved_nano": 0,
            "created_at": now,
            "updated_at": now,
        }
        budget_id = conn.execute(
            insert(Budget).values(values | _terms_values(terms)).returning(Budget.id)
        ).scalar_one()
        found = int(budget_id)
    (row,) = lock_budgets(conn, [found])
    _apply(conn, row, terms, fresh=created, now=now)
    if key.owner_type == END_USER:  # set on its own: no longer follows a default
        conn.execute(update(Budget).where(Budget.id == found).values(template_id=None))
    if key.owner_type == EACH_END_USER and not created:
        for instance in lock_budgets(conn, _instances(conn, found)):
            _apply(conn, instance, terms, fresh=False, now=now)
    return found


def _terms_values(terms: Terms) -> dict[str, object]:
    return {
        "limit_nano": terms.limit_nano,
        "period": terms.period,
        "timezone": terms.timezone,
        "soft_pct": terms.soft_pct,
    }


def _apply(conn: Connection, row: BudgetRow, terms: Terms, *, fresh: bool, now: datetime) -> None:
    """Give a locked budget these terms (a new period or zone: a new window)."""
    new_window = fresh or row.period != terms.period or row.timezone != terms.timezone
    row.limit_nano, row.soft_pct = terms.limit_nano, terms.soft_pct
    row.period, row.timezone = terms.period, terms.timezone
    if new_window:
        window = initial_window(parse_period(terms.period), terms.timezone, now)
        start_window(conn, row, window, now=now)
    else:
        roll_forward(conn, row, now=now)
        note_soft_limit(conn, row, now=now)
    conn.execute(update(Budget).where(Budget.id == row.id).values(_terms_values(terms)))
    save_counters(conn, row, now=now)


def _instances(conn: Connection, default_id: int) -> list[int]:
    """The end-user budgets created from a default (and still following it)."""
    query = select(Budget.id).where(Budget.template_id == default_id).order_by(Budget.id)
    return [int(i) for i in conn.execute(query).scalars()]


def remove_budget_of(conn: Connection, key: BudgetKey, *, label: str) -> None:
    """Delete one budget (a default: with the budgets created from it; their events go
    with them). Refused while requests hold reservations in it: their settlement would
    have no budget to settle against, and the spend they were admitted under would
    vanish from the counters mid-request. ``label``: the budget in words, for errors."""
    key = checked_key(key)
    found = find_budget(conn, key)
    if found is None:
        raise NotFound(f"{label} has no budget (see metering budgets list)")
    ids = [found, *(_instances(conn, found) if key.owner_type == EACH_END_USER else ())]
    lock_budgets(conn, ids)  # no reservation can be added until this commits
    held = conn.execute(
        select(func.count(), func.coalesce(func.sum(Reservation.amount_nano), 0)).where(
            Reservation.budget_id.in_(ids)
        )
    ).one()
    if held[0]:
        raise Conflict(
            f"the budget of {label} has {format_usd(int(held[1]))} USD reserved by "
            f"{held[0]} request(s) in flight; remove it once they have settled (try again "
            "in a minute)"
        )
    conn.execute(delete(BudgetEvent).where(BudgetEvent.budget_id.in_(ids)))
    conn.execute(delete(Budget).where(Budget.id.in_(ids)))
