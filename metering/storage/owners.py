"""Budget owners: a virtual key, a team or a customer, named by the user by name or id.

An all-digit argument is tried as an id first, then as a name — the rule
``storage.keys.find_key`` uses for keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from sqlalchemy import Connection, select

from metering.core.storable import has_control
from metering.errors import InvalidInput, NotFound
from metering.storage.keys import find_key
from metering.storage.models import Customer, Team, VirtualKey

OwnerType = Literal["key", "team", "customer"]
OWNER_TYPES: tuple[OwnerType, ...] = ("key", "team", "customer")
_MODELS: dict[str, type[VirtualKey] | type[Team] | type[Customer]] = {
    "key": VirtualKey,
    "team": Team,
    "customer": Customer,
}
_LISTING = {"team": "metering teams list", "customer": "metering customers list"}


def check_owner_type(owner_type: str) -> OwnerType:
    if owner_type not in OWNER_TYPES:
        raise InvalidInput(f"budget owner type {owner_type!r} must be key, team or customer")
    return owner_type


def find_owner(conn: Connection, owner_type: str, name_or_id: str | int) -> tuple[int, str]:
    """(id, name) of the key, team or customer called ``name_or_id`` (or with that id)."""
    kind = check_owner_type(owner_type)
    if kind == "key":
        key = find_key(conn, name_or_id)
        return key.id, key.name
    model = _MODELS[kind]
    text = str(name_or_id).strip()
    if has_control(text):  # no name holds one (and PostgreSQL refuses NUL in a query)
        raise NotFound(f"no {kind} named {text!r} (names hold no control characters)")
    row = None
    if text.isdigit():
        row = conn.execute(select(model.id, model.name).where(model.id == int(text))).first()
    if row is None:
        row = conn.execute(select(model.id, model.name).where(model.name == text)).first()
    if row is None:
        raise NotFound(f"no {kind} named {text!r} (see {_LISTING[kind]})")
    return int(row[0]), str(row[1])


def owner_names(conn: Connection, owners: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Names of (owner_type, owner_id) pairs; a deleted owner is named by its id."""
    wanted: dict[str, set[int]] = {}
    for kind, owner_id in owners:
        wanted.setdefault(kind, set()).add(owner_id)
    names: dict[tuple[str, int], str] = {}
    for kind, ids in wanted.items():
        model = _MODELS[check_owner_type(kind)]
        for row in conn.execute(select(model.id, model.name).where(model.id.in_(sorted(ids)))):
            names[(kind, int(row[0]))] = str(row[1])
        for owner_id in ids:
            names.setdefault((kind, owner_id), f"#{owner_id}")
    return names
