"""``/admin/v1/budgets``: the twins of ``metering budgets set | list | remove``
(``operations.budgets``). The listing is ``budget_rows``, what ``budgets list`` prints,
so fields added there (forecasts) appear here too."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import Connection

from metering.admin.endpoint import BOOL, NSTR, NUSD, STR, USD, Endpoint, listing, obj
from metering.admin.http import AdminRequest, Body, Param, Reply
from metering.errors import InvalidInput
from metering.operations.budgets import budget_rows, remove_budget_op, set_budget_op

Text = Annotated[str, Field(min_length=1, max_length=200)]
OWNER_TYPES = ("key", "team", "customer", "tag", "end_user", "each_end_user")

BUDGET = obj(
    ("owner_type", "owner", "limit", "period", "timezone", "spent", "reserved", "remaining",
     "period_start", "next_reset", "soft_limit_crossed", "forecast", "limit_reached_on",
     "daily_rate", "forecast_basis", "model", "scope"),
    owner_type={"enum": list(OWNER_TYPES)}, owner=STR, limit=USD, period=STR,
    timezone=STR, spent=USD, reserved=USD, remaining=USD, period_start=STR, next_reset=NSTR,
    soft_limit_crossed=BOOL, forecast=NUSD, limit_reached_on=NSTR, daily_rate=NUSD,
    forecast_basis={"enum": ["period", "recent", None]}, model=NSTR, scope=NSTR,
)  # fmt: skip
REMOVED = obj(("owner_type", "owner", "removed"), owner_type=STR, owner=STR, removed=BOOL)


class BudgetSet(Body):
    """The budget of one key, team or customer (created or changed)."""

    # tag: ``owner`` is the tag; end_user: the end-user id; each_end_user: ignored (give
    # ``scope``); both end-user kinds name their customer (or key: ``scope_type``) in scope
    owner_type: Literal["key", "team", "customer", "tag", "end_user", "each_end_user"]
    owner: Text
    limit: Text
    period: Text
    soft: Annotated[int, Field(ge=1, le=100)] | None = None
    timezone: Text = "UTC"
    allow_zero: bool = False
    model: Text | None = None  # a model pattern: the owner's budget narrowed to it
    scope_type: Literal["customer", "key"] | None = None  # default: customer
    scope: Text | None = None


def list_budgets(conn: Connection, request: AdminRequest) -> Reply:
    return Reply(200, {"data": budget_rows(conn)})


def set_budget(conn: Connection, request: AdminRequest) -> Reply:
    body = request.json_body(BudgetSet)
    row = set_budget_op(
        conn,
        owner_type=body.owner_type,
        owner=body.owner,
        limit=body.limit,
        period=body.period,
        soft=body.soft,
        timezone=body.timezone,
        allow_zero=body.allow_zero,
        model=body.model,
        scope_type=body.scope_type,
        scope=body.scope,
        actor=request.token.name,
    )
    return Reply(200, row)


def remove_budget(conn: Connection, request: AdminRequest) -> Reply:
    kind = request.path_params["owner_type"]
    if kind not in OWNER_TYPES:
        raise InvalidInput(f"a budget's owner type is one of {', '.join(OWNER_TYPES)}")
    removed = remove_budget_op(
        conn,
        owner_type=kind,
        owner=request.path_params["owner"],
        model=request.query.get("model"),
        scope_type=request.query.get("scope_type"),
        scope=request.query.get("scope"),
        actor=request.token.name,
    )
    return Reply(200, {"owner_type": kind, "owner": removed.name, "removed": True})


ENDPOINTS = [
    Endpoint("GET", "/budgets", "budgets:read", list_budgets,
             "Every budget: limit, spent, reserved, remaining, period, next reset",
             response=listing(BUDGET)),
    Endpoint("POST", "/budgets", "budgets:write", set_budget,
             "Set (create or change) the budget of a key, team or customer", body=BudgetSet,
             response=BUDGET, writes=True),
    Endpoint("DELETE", "/budgets/{owner_type}/{owner}", "budgets:write", remove_budget,
             "Remove a budget (refused while requests hold reservations in it)",
             query=(Param("model", description="the budget narrowed to this model pattern"),
                    Param("scope_type", enum=("customer", "key")),
                    Param("scope", description="an end user's customer or key (name or id)")),
             response=REMOVED, writes=True),
]  # fmt: skip
