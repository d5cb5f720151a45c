"""Teams and customers: create (a team may belong to a customer) and list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from metering.errors import Conflict, InvalidInput
from metering.storage.audit import record_change
from metering.storage.keys import ensure_customer, ensure_team, iso_utc
from metering.storage.models import Customer, Team, VirtualKey
from metering.storage.owners import find_owner


def team_rows(conn: Connection) -> list[dict[str, Any]]:
    keys = select(func.count()).where(VirtualKey.team_id == Team.id).scalar_subquery()
    query = (
        select(Team.id, Team.name, Customer.name.label("customer"), Team.created_at,
               keys.label("keys"))
        .outerjoin(Customer, Customer.id == Team.customer_id)
        .order_by(Team.id)
    )  # fmt: skip
    return [
        {"id": r.id, "name": r.name, "customer": r.customer, "keys": int(r.keys),
         "created_at": iso_utc(r.created_at)}
        for r in conn.execute(query)
    ]  # fmt: skip


def customer_rows(conn: Connection) -> list[dict[str, Any]]:
    teams = select(func.count()).where(Team.customer_id == Customer.id).scalar_subquery()
    keys = select(func.count()).where(VirtualKey.customer_id == Customer.id).scalar_subquery()
    query = select(
        Customer.id, Customer.name, Customer.created_at, teams.label("teams"), keys.label("keys")
    ).order_by(Customer.id)
    return [
        {"id": r.id, "name": r.name, "teams": int(r.teams), "keys": int(r.keys),
         "created_at": iso_utc(r.created_at)}
        for r in conn.execute(query)
    ]  # fmt: skip


def _row(rows: list[dict[str, Any]], owner_id: int) -> dict[str, Any]:
    return next(r for r in rows if r["id"] == owner_id)


def _new_name(name: str, what: str) -> str:
    name = name.strip()
    if name.isdigit():
        raise InvalidInput(f"{what} name {name!r} cannot be all digits (it would read as an id)")
    return name


def create_customer_op(conn: Connection, *, name: str, actor: str) -> dict[str, Any]:
    name = _new_name(name, "customer")
    if conn.execute(select(Customer.id).where(Customer.name == name.strip())).first():
        raise Conflict(f"a customer named {name.strip()!r} already exists")
    customer_id = ensure_customer(conn, name)
    after = _row(customer_rows(conn), customer_id)
    record_change(
        conn, actor=actor, action="customer.create", target=f"customer:{after['name']}",
        before=None, after=after,
    )  # fmt: skip
    return after


def create_team_op(
    conn: Connection, *, name: str, customer: str | None, actor: str
) -> dict[str, Any]:
    name = _new_name(name, "team")
    if conn.execute(select(Team.id).where(Team.name == name.strip())).first():
        raise Conflict(f"a team named {name.strip()!r} already exists")
    customer_id = find_owner(conn, "customer", customer)[0] if customer is not None else None
    team_id = ensure_team(conn, name, customer_id=customer_id)
    after = _row(team_rows(conn), team_id)
    record_change(
        conn, actor=actor, action="team.create", target=f"team:{after['name']}",
        before=None, after=after,
    )  # fmt: skip
    return after
