"""Budget operations: set (create or change), remove, list with their status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from metering.errors import InvalidInput
from metering.operations.limits import limit_from_option
from metering.storage.audit import record_change
from metering.storage.budgets import BudgetStatus, budget_status, remove_budget, set_budget
from metering.storage.keys import utcnow
from metering.storage.owners import find_owner


def one_owner(key: str | None, team: str | None, customer: str | None) -> tuple[str, str]:
    """The one (owner type, name or id) among the three selectors."""
    owners = [(kind, ref) for kind, ref in (("key", key), ("team", team), ("customer", customer))]
    given = [(kind, ref) for kind, ref in owners if ref is not None]
    if len(given) != 1:
        raise InvalidInput("name exactly one budget owner: --key K, --team T or --customer C")
    return given[0]


def _current(
    conn: Connection, owner_type: str, owner_id: int, now: datetime
) -> BudgetStatus | None:
    ids = [
        s
        for s in budget_status(conn, now=now)
        if s.owner_type == owner_type and s.owner_id == owner_id
    ]
    return ids[0] if ids else None


def set_budget_op(
    conn: Connection,
    *,
    owner_type: str,
    owner: str,
    limit: str,
    period: str,
    soft: int | None = None,
    timezone: str = "UTC",
    allow_zero: bool = False,
    actor: str,
) -> dict[str, Any]:
    """Create or change the budget of one key, team or customer; its status as listed."""
    limit_nano = limit_from_option(limit, option="--limit", allow_zero=allow_zero)
    now = utcnow()
    owner_id, name = find_owner(conn, owner_type, owner)
    before = _current(conn, owner_type, owner_id, now)
    status = set_budget(
        conn,
        owner_type=owner_type,
        owner_id=owner_id,
        limit_nano=limit_nano,
        period=period,
        timezone=timezone,
        soft_pct=soft,
        now=now,
    )
    after = status.as_dict()
    record_change(
        conn, actor=actor, action="budget.set", target=f"{owner_type}:{name}",
        before=before.as_dict() if before else None, after=after,
    )  # fmt: skip
    return after


def remove_budget_op(conn: Connection, *, owner_type: str, owner: str, actor: str) -> str:
    """Remove the budget of one key, team or customer; the owner's name."""
    owner_id, name = find_owner(conn, owner_type, owner)
    before = _current(conn, owner_type, owner_id, utcnow())
    remove_budget(conn, owner_type=owner_type, owner_id=owner_id, owner_name=name)
    record_change(
        conn, actor=actor, action="budget.remove", target=f"{owner_type}:{name}",
        before=before.as_dict() if before else None, after=None,
    )  # fmt: skip
    return name


def budget_rows(conn: Connection, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every budget as ``metering budgets list --format json`` prints it (and the admin
    API's ``GET /admin/v1/budgets``)."""
    return [s.as_dict() for s in budget_status(conn, now=now or utcnow())]
