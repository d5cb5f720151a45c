"""Budget operations: set (create or change), remove, list with their status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from metering.core.model_patterns import check_model_pattern
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


def model_option(pattern: str | None) -> str:
    """``--model``: absent = the budget of every model (''); given, a valid pattern."""
    return "" if pattern is None else check_model_pattern(pattern, option="--model")


def _current(
    conn: Connection, owner_type: str, owner_id: int, model_pattern: str, now: datetime
) -> BudgetStatus | None:
    ids = [
        s
        for s in budget_status(conn, now=now)
        if (s.owner_type, s.owner_id, s.model_pattern) == (owner_type, owner_id, model_pattern)
    ]
    return ids[0] if ids else None


def _target(owner_type: str, name: str, model_pattern: str) -> str:
    """The audit log's name of a budget: ``key:app``, ``key:app@openai/gpt-4o*``."""
    return f"{owner_type}:{name}" + (f"@{model_pattern}" if model_pattern else "")


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
    model: str | None = None,
    actor: str,
) -> dict[str, Any]:
    """Create or change the budget of one key, team or customer (narrowed to the model
    pattern ``model``, if given); its status as listed."""
    pattern = model_option(model)
    limit_nano = limit_from_option(limit, option="--limit", allow_zero=allow_zero)
    now = utcnow()
    owner_id, name = find_owner(conn, owner_type, owner)
    before = _current(conn, owner_type, owner_id, pattern, now)
    status = set_budget(
        conn,
        owner_type=owner_type,
        owner_id=owner_id,
        limit_nano=limit_nano,
        period=period,
        timezone=timezone,
        soft_pct=soft,
        model_pattern=pattern,
        now=now,
    )
    after = status.as_dict()
    record_change(
        conn, actor=actor, action="budget.set", target=_target(owner_type, name, pattern),
        before=before.as_dict() if before else None, after=after,
    )  # fmt: skip
    return after


def remove_budget_op(
    conn: Connection, *, owner_type: str, owner: str, model: str | None = None, actor: str
) -> str:
    """Remove the budget of one key, team or customer (the one narrowed to ``model``, if
    given); the owner's name."""
    pattern = model_option(model)
    owner_id, name = find_owner(conn, owner_type, owner)
    before = _current(conn, owner_type, owner_id, pattern, utcnow())
    remove_budget(
        conn, owner_type=owner_type, owner_id=owner_id, owner_name=name, model_pattern=pattern
    )
    record_change(
        conn, actor=actor, action="budget.remove", target=_target(owner_type, name, pattern),
        before=before.as_dict() if before else None, after=None,
    )  # fmt: skip
    return name


def budget_rows(conn: Connection, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every budget as ``metering budgets list --format json`` prints it (and the admin
    API's ``GET /admin/v1/budgets``)."""
    return [s.as_dict() for s in budget_status(conn, now=now or utcnow())]
