"""``/admin/v1/budgets``: the twins of ``metering budgets set | list | remove``
(``operations.budgets``). The listing is ``budget_rows``, what ``budgets list`` prints,
so fields added there (forecasts) appear here too."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import Connection

from metering.admin.endpoint import BOOL, NSTR, NUSD, STR, USD, Endpoint, listing, obj
from metering.admin.http import AdminRequest, Body, Param, Reply
from metering.operations.budgets import budget_rows, remove_budget_op, set_budget_op
from metering.storage.owners import check_owner_type

Text = Annotated[str, Field(min_length=1, max_length=200)]

BUDGET = obj(
    ("owner_type", "owner", "limit", "period", "timezone", "spent", "reserved", "remaining",
     "period_start", "next_reset", "soft_limit_crossed", "forecast", "limit_reached_on",
     "daily_rate", "forecast_basis", "model"),
    owner_type={"enum": ["key", "team", "customer"]}, owner=STR, limit=USD, period=STR,
    timezone=STR, spent=USD, reserved=USD, remaining=USD, period_start=STR, next_reset=NSTR,
    soft_limit_crossed=BOOL, forecast=NUSD, limit_reached_on=NSTR, daily_rate=NUSD,
    forecast_basis={"enum": ["period", "recent", None]}, model=NSTR,
)  # fmt: skip
REMOVED = obj(("owner_type", "owner", "removed"), owner_type=STR, owner=STR, removed=BOOL)


class BudgetSet(Body):
    """The budget of one key, team or customer (created or changed)."""

    owner_type: Literal["key", "team", "customer"]
    owner: Text
    limit: Text
    period: Text
    soft: Annotated[int, Field(ge=1, le=100)] | None = None
    timezone: Text = "UTC"
    allow_zero: bool = False
    model: Text | None = None  # a model pattern: the owner's budget narrowed to it


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
        actor=request.token.name,
    )
    return Reply(200, row)


def remove_budget(conn: Connection, request: AdminRequest) -> Reply:
    kind = check_owner_type(request.path_params["owner_type"])
    name = remove_budget_op(
        conn,
        owner_type=kind,
        owner=request.path_params["owner"],
        model=request.query.get("model"),
        actor=request.token.name,
    )
    return Reply(200, {"owner_type": kind, "owner": name, "removed": True})


ENDPOINTS = [
    Endpoint("GET", "/budgets", "budgets:read", list_budgets,
             "Every budget: limit, spent, reserved, remaining, period, next reset",
             response=listing(BUDGET)),
    Endpoint("POST", "/budgets", "budgets:write", set_budget,
             "Set (create or change) the budget of a key, team or customer", body=BudgetSet,
             response=BUDGET, writes=True),
    Endpoint("DELETE", "/budgets/{owner_type}/{owner}", "budgets:write", remove_budget,
             "Remove a budget (refused while requests hold reservations in it)",
             query=(Param("model", description="the budget narrowed to this model pattern"),),
             response=REMOVED, writes=True),
]  # fmt: skip
