"""Budget operations: set (create or change), remove, list with their status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from metering.core.model_patterns import check_model_pattern
from metering.errors import InvalidInput
from metering.operations.limits import limit_from_option
from metering.storage.audit import record_change
from metering.storage.budget_changes import (
    BudgetKey,
    checked_key,
    find_budget,
    remove_budget_of,
)
from metering.storage.budget_rows import EACH_END_USER, END_USER, TAG
from metering.storage.budgets import BudgetStatus, budget_status, set_budget
from metering.storage.keys import utcnow
from metering.storage.owners import find_owner

OWNER_HELP = (
    "name exactly one budget owner: --key K, --team T, --customer C, --tag T, --end-user U "
    "(--customer C | --key K) or --each-end-user (--customer C | --key K)"
)


def one_owner(key: str | None, team: str | None, customer: str | None) -> tuple[str, str]:
    """The one (owner type, name or id) among the three selectors."""
    owners = [(kind, ref) for kind, ref in (("key", key), ("team", team), ("customer", customer))]
    given = [(kind, ref) for kind, ref in owners if ref is not None]
    if len(given) != 1:
        raise InvalidInput("name exactly one budget owner: --key K, --team T or --customer C")
    return given[0]


@dataclass(frozen=True, slots=True)
class Selected:
    """The budget a command names: ``owner_type`` key | team | customer (``owner``: its
    name or id), tag (``owner``: the tag), end_user (``owner``: the end-user id) or
    each_end_user (``owner``: unused); an end user's scope: ``scope_type`` customer |
    key and ``scope`` its name or id."""

    owner_type: str
    owner: str
    scope_type: str | None = None
    scope: str | None = None


def select_budget(
    *,
    key: str | None = None,
    team: str | None = None,
    customer: str | None = None,
    tag: str | None = None,
    end_user: str | None = None,
    each_end_user: bool = False,
) -> Selected:
    """The budget the CLI's owner options name (``OWNER_HELP``), or InvalidInput."""
    if tag is not None:
        if any(v is not None for v in (key, team, customer, end_user)) or each_end_user:
            raise InvalidInput(OWNER_HELP)
        return Selected(TAG, tag)
    if end_user is not None or each_end_user:
        scopes = [(kind, ref) for kind, ref in (("customer", customer), ("key", key)) if ref]
        if team is not None or len(scopes) != 1 or (end_user is not None and each_end_user):
            raise InvalidInput(OWNER_HELP)
        (kind, ref), owner_type = scopes[0], (EACH_END_USER if each_end_user else END_USER)
        return Selected(owner_type, end_user or "", kind, ref)
    owners = [(kind, ref) for kind, ref in (("key", key), ("team", team), ("customer", customer))]
    given = [(kind, ref) for kind, ref in owners if ref is not None]
    if len(given) != 1:
        raise InvalidInput(OWNER_HELP)
    return Selected(*given[0])


def model_option(pattern: str | None) -> str:
    """``--model``: absent = the budget of every model (''); given, a valid pattern."""
    return "" if pattern is None else check_model_pattern(pattern, option="--model")


@dataclass(frozen=True, slots=True)
class Resolved:
    key: BudgetKey  # its name in storage
    name: str  # its owner's name (a key's, team's, customer's), tag or end-user id
    target: str  # in the audit log: key:app, tag:beta, end_user:customer:acme/u-1 (@model)
    words: str  # in messages: key 'app', end user 'u-1' of customer 'acme' (for models …)


def _resolve(conn: Connection, selected: Selected, pattern: str) -> Resolved:
    narrowed = f"@{pattern}" if pattern else ""
    models = f" for models {pattern!r}" if pattern else ""
    kind, owner = selected.owner_type, selected.owner
    if kind == TAG:
        key = BudgetKey(TAG, 0, "", owner, pattern)
        return Resolved(key, owner, f"tag:{owner}{narrowed}", f"tag {owner!r}{models}")
    if kind in (END_USER, EACH_END_USER):
        scope_type = selected.scope_type or "customer"
        if scope_type not in ("customer", "key") or not selected.scope:
            raise InvalidInput(
                "an end user's budget names the customer or key whose end users it caps "
                "(--customer C | --key K)"
            )
        scope_id, scope_name = find_owner(conn, scope_type, selected.scope)
        scope = f"{scope_type}:{scope_id}"
        of = f"{scope_type} {scope_name!r}"
        if kind == EACH_END_USER:
            key = BudgetKey(kind, 0, scope, "", pattern)
            target = f"each_end_user:{scope_type}:{scope_name}{narrowed}"
            return Resolved(key, "each end user", target, f"each end user of {of}{models}")
        key = BudgetKey(kind, 0, scope, owner, pattern)
        target = f"end_user:{scope_type}:{scope_name}/{owner}{narrowed}"
        return Resolved(key, owner, target, f"end user {owner!r} of {of}{models}")
    owner_id, name = find_owner(conn, kind, owner)
    key = BudgetKey(kind, owner_id, "", "", pattern)
    return Resolved(key, name, f"{kind}:{name}{narrowed}", f"{kind} {name!r}{models}")


def _status(conn: Connection, key: BudgetKey, now: datetime) -> BudgetStatus | None:
    found = find_budget(conn, checked_key(key))
    return None if found is None else budget_status(conn, now=now, budget_ids=[found])[0]


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
    scope_type: str | None = None,
    scope: str | None = None,
    actor: str,
) -> dict[str, Any]:
    """Create or change one budget (``Selected`` says which; narrowed to the model
    pattern ``model``, if given); its status as listed."""
    pattern = model_option(model)
    limit_nano = limit_from_option(limit, option="--limit", allow_zero=allow_zero)
    now = utcnow()
    it = _resolve(conn, Selected(owner_type, owner, scope_type, scope), pattern)
    before = _status(conn, it.key, now)
    status = set_budget(
        conn,
        owner_type=it.key.owner_type,
        owner_id=it.key.owner_id,
        scope=it.key.scope,
        subject=it.key.subject,
        limit_nano=limit_nano,
        period=period,
        timezone=timezone,
        soft_pct=soft,
        model_pattern=pattern,
        now=now,
    )
    after = status.as_dict()
    record_change(
        conn, actor=actor, action="budget.set", target=it.target,
        before=before.as_dict() if before else None, after=after,
    )  # fmt: skip
    return after


def remove_budget_op(
    conn: Connection,
    *,
    owner_type: str,
    owner: str,
    model: str | None = None,
    scope_type: str | None = None,
    scope: str | None = None,
    actor: str,
) -> Resolved:
    """Remove one budget (a default: with the budgets created from it); which it was."""
    pattern = model_option(model)
    it = _resolve(conn, Selected(owner_type, owner, scope_type, scope), pattern)
    before = _status(conn, it.key, utcnow())
    remove_budget_of(conn, it.key, label=it.words)
    record_change(
        conn, actor=actor, action="budget.remove", target=it.target,
        before=before.as_dict() if before else None, after=None,
    )  # fmt: skip
    return it


def budget_rows(conn: Connection, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every budget as ``metering budgets list --format json`` prints it (and the admin
    API's ``GET /admin/v1/budgets``)."""
    return [s.as_dict() for s in budget_status(conn, now=now or utcnow())]
