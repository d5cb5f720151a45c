"""``/admin/v1/keys``, ``/teams``, ``/customers``: the twins of ``metering keys``,
``teams`` and ``customers`` (``operations.keys``, ``operations.owners``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import Connection

from metering.admin.endpoint import INT, NINT, NSTR, STR, Endpoint, listing, obj
from metering.admin.http import MAX_INT, AdminRequest, Body, Param, Reply
from metering.operations.keys import (
    KEY_STATUSES,
    KeyFilter,
    KeySpec,
    create_key_op,
    key_rows,
    set_key_enabled_op,
    update_key_op,
)
from metering.operations.owners import (
    create_customer_op,
    create_team_op,
    customer_rows,
    team_rows,
)
from metering.storage.keys import find_key

Name = Annotated[str, Field(min_length=1, max_length=200)]
Limit = Annotated[int, Field(ge=1, le=MAX_INT)]
Text = Annotated[str, Field(max_length=200)]

KEY = obj(
    ("id", "name", "prefix", "team", "customer", "models", "rpm", "tpm", "status", "expires_at",
     "created_at"),
    id=INT, name=STR, prefix=STR, team=NSTR, customer=NSTR,
    models={"type": "array", "items": STR}, rpm=NINT, tpm=NINT,
    status={"enum": list(KEY_STATUSES)}, expires_at=NSTR, created_at=STR,
)  # fmt: skip
CREATED_KEY = obj(("id", "name", "key"), id=INT, name=STR, key=NSTR)
TEAM = obj(("id", "name", "customer", "keys", "created_at"),
           id=INT, name=STR, customer=NSTR, keys=INT, created_at=STR)  # fmt: skip
CUSTOMER = obj(("id", "name", "teams", "keys", "created_at"),
               id=INT, name=STR, teams=INT, keys=INT, created_at=STR)  # fmt: skip


class KeyCreate(Body):
    """A key to create; with ``budget`` and ``period``, its own budget too."""

    name: Name
    team: Text | None = None
    customer: Text | None = None
    models: list[Text] = []
    rpm: Limit | None = None
    tpm: Limit | None = None
    expires: Text | None = None
    budget: Text | None = None
    period: Text | None = None
    soft: Annotated[int, Field(ge=1, le=100)] | None = None
    timezone: Text = "UTC"
    allow_zero: bool = False
    tags: list[Text] = []  # default request tags (README, Attribution)


class KeyUpdate(Body):
    """Only the fields sent change; null clears models, rpm, tpm, expires, team, customer
    and tags."""

    models: list[Text] | None = None
    tags: list[Text] | None = None
    rpm: Limit | None = None
    tpm: Limit | None = None
    expires: Text | None = None
    team: Text | None = None
    customer: Text | None = None


class TeamCreate(Body):
    name: Name
    customer: Text | None = None


class CustomerCreate(Body):
    name: Name


def list_keys(conn: Connection, request: AdminRequest) -> Reply:
    q = request.query
    filters = KeyFilter(
        team=q.get("team"),
        customer=q.get("customer"),
        status=q.get("status"),
        limit=q.get("limit", 100),
        offset=q.get("offset", 0),
    )
    rows, total = key_rows(conn, filters)
    return Reply(200, {"data": rows, "total": total, "limit": filters.limit,
                       "offset": filters.offset})  # fmt: skip


def create_key(conn: Connection, request: AdminRequest) -> Reply:
    body = request.json_body(KeyCreate)
    spec = KeySpec(**{**body.model_dump(), "models": tuple(body.models), "tags": tuple(body.tags)})
    created = create_key_op(conn, spec, actor=request.token.name)
    info = created.info
    return Reply(201, {"id": info.id, "name": info.name, "key": created.secret})


def get_key(conn: Connection, request: AdminRequest) -> Reply:
    return Reply(200, find_key(conn, request.path_params["key"]).as_dict())


def update_key(conn: Connection, request: AdminRequest) -> Reply:
    body = request.json_body(KeyUpdate)
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    info = update_key_op(conn, request.path_params["key"], changes, actor=request.token.name)
    return Reply(200, info.as_dict())


def _enabled(enabled: bool, conn: Connection, request: AdminRequest) -> Reply:
    info = set_key_enabled_op(
        conn, request.path_params["key"], enabled=enabled, actor=request.token.name
    )
    return Reply(200, info.as_dict())


def disable_key(conn: Connection, request: AdminRequest) -> Reply:
    return _enabled(False, conn, request)


def enable_key(conn: Connection, request: AdminRequest) -> Reply:
    return _enabled(True, conn, request)


def list_teams(conn: Connection, request: AdminRequest) -> Reply:
    return Reply(200, {"data": team_rows(conn)})


def create_team(conn: Connection, request: AdminRequest) -> Reply:
    body = request.json_body(TeamCreate)
    row = create_team_op(conn, name=body.name, customer=body.customer, actor=request.token.name)
    return Reply(201, row)


def list_customers(conn: Connection, request: AdminRequest) -> Reply:
    return Reply(200, {"data": customer_rows(conn)})


def create_customer(conn: Connection, request: AdminRequest) -> Reply:
    body = request.json_body(CustomerCreate)
    return Reply(201, create_customer_op(conn, name=body.name, actor=request.token.name))


KEY_FILTERS = (
    Param("team", description="only the keys of this team (name or id)"),
    Param("customer", description="only the keys of this customer (name or id)"),
    Param("status", enum=KEY_STATUSES),
    Param("limit", "integer", "page size", minimum=1, maximum=1000),
    Param("offset", "integer", "keys skipped", minimum=0, maximum=10**9),
)

ENDPOINTS = [
    Endpoint("GET", "/keys", "keys:read", list_keys, "List virtual keys (filters, pages)",
             query=KEY_FILTERS, response=listing(KEY, paged=True)),
    Endpoint("POST", "/keys", "keys:write", create_key, "Create a key: its secret, once",
             body=KeyCreate, response=CREATED_KEY, status=201, writes=True, redact=("key",)),
    Endpoint("GET", "/keys/{key}", "keys:read", get_key, "One key (name or id)", response=KEY),
    Endpoint("PATCH", "/keys/{key}", "keys:write", update_key,
             "Change models, limits, expiry, team, customer", body=KeyUpdate, response=KEY,
             writes=True),
    Endpoint("POST", "/keys/{key}/disable", "keys:write", disable_key, "Disable a key",
             response=KEY, writes=True),
    Endpoint("POST", "/keys/{key}/enable", "keys:write", enable_key, "Enable a key",
             response=KEY, writes=True),
    Endpoint("GET", "/teams", "keys:read", list_teams, "List teams", response=listing(TEAM)),
    Endpoint("POST", "/teams", "keys:write", create_team, "Create a team", body=TeamCreate,
             response=TEAM, status=201, writes=True),
    Endpoint("GET", "/customers", "keys:read", list_customers, "List customers",
             response=listing(CUSTOMER)),
    Endpoint("POST", "/customers", "keys:write", create_customer, "Create a customer",
             body=CustomerCreate, response=CUSTOMER, status=201, writes=True),
]  # fmt: skip
