"""Virtual keys, teams and customers.

A secret is ``sk-bf-`` + 43 url-safe random characters (``secrets``); only its
sha256 hex digest and a short display prefix are stored, so the secret is shown
once, at creation. Teams and customers are created on demand by name; a key may
belong to a team, a team to a customer. A key's ``customer_id`` is the customer
given at creation, else its team's.

``find_key`` (name or id) is the lookup every command uses; ``authenticate``
is the gateway's lookup by secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from metering.core.attribution import tags_of
from metering.core.storable import has_control
from metering.errors import Conflict, InvalidInput, NotFound
from metering.storage.attribution import check_key_tags, key_tags_column, set_key_tags
from metering.storage.models import Customer, Team, VirtualKey

SECRET_PREFIX = "sk-bf-"
DISPLAY_PREFIX_CHARS = 10  # "sk-bf-" + 4 characters of the secret


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A virtual key as stored, with its team and customer names."""

    id: int
    name: str
    key_prefix: str
    team_id: int | None
    team: str | None
    customer_id: int | None
    customer: str | None
    allowed_models: tuple[str, ...]
    rpm_limit: int | None
    tpm_limit: int | None
    enabled: bool
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tags: tuple[str, ...] = ()  # default tags of its requests (README, Attribution)

    def blocked_reason(self, now: datetime) -> str | None:
        """Why the key cannot be used at ``now`` (naive UTC), or None if it can."""
        if not self.enabled:
            return f"virtual key {self.name!r} is disabled (re-enable it: metering keys enable)"
        if self.expires_at is not None and now >= self.expires_at:
            return (
                f"virtual key {self.name!r} expired at {self.expires_at.isoformat()} UTC "
                "(create a new key)"
            )
        return None

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.expires_at is not None and utcnow() >= self.expires_at:
            return "expired"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.key_prefix,
            "team": self.team,
            "customer": self.customer,
            "models": list(self.allowed_models),
            "rpm": self.rpm_limit,
            "tpm": self.tpm_limit,
            "status": self.status,
            # UTC with a Z, like budgets list
            "expires_at": iso_utc(self.expires_at) if self.expires_at else None,
            "created_at": iso_utc(self.created_at),
            "tags": list(self.tags),
        }


def iso_utc(at: datetime) -> str:
    """A naive UTC time as ISO-8601 with a Z, as every listing shows it."""
    return at.isoformat(timespec="seconds") + "Z"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    info: KeyInfo
    secret: str  # shown once; never stored


def _key_query() -> Any:
    return (
        select(
            VirtualKey.__table__,
            Team.name.label("team_name"),
            Customer.name.label("customer_name"),
            key_tags_column().label("default_tags"),
        )
        .outerjoin(Team, Team.id == VirtualKey.team_id)
        .outerjoin(Customer, Customer.id == VirtualKey.customer_id)
    )


def _info(row: Row[Any]) -> KeyInfo:
    key = row._mapping
    return KeyInfo(
        id=key["id"],
        name=key["name"],
        key_prefix=key["key_prefix"],
        team_id=key["team_id"],
        team=key["team_name"],
        customer_id=key["customer_id"],
        customer=key["customer_name"],
        allowed_models=tuple(json.loads(key["allowed_models"] or "[]")),
        rpm_limit=key["rpm_limit"],
        tpm_limit=key["tpm_limit"],
        enabled=bool(key["enabled"]),
        expires_at=key["expires_at"],
        created_at=key["created_at"],
        updated_at=key["updated_at"],
        tags=tuple(sorted(tags_of(key["default_tags"]))),
    )


def _named_id(conn: Connection, model: type[Team] | type[Customer], name_or_id: str) -> int | None:
    if name_or_id.isdigit():
        found = conn.execute(select(model.id).where(model.id == int(name_or_id))).scalar()
        if found is not None:
            return int(found)
    found = conn.execute(select(model.id).where(model.name == name_or_id)).scalar()
    return int(found) if found is not None else None


def ensure_customer(conn: Connection, name: str) -> int:
    """The customer called ``name`` (or with that id), created if it does not exist."""
    name = check_name(name, "customer")
    found = _named_id(conn, Customer, name)
    if found is not None:
        return found
    return int(
        conn.execute(
            insert(Customer).values(name=name, created_at=utcnow()).returning(Customer.id)
        ).scalar_one()
    )


def ensure_team(conn: Connection, name: str, *, customer_id: int | None = None) -> int:
    """The team called ``name`` (or with that id), created if needed. With ``customer_id``,
    a team without a customer is attached to it; a team of another customer is a Conflict."""
    name = check_name(name, "team")
    found = _named_id(conn, Team, name)
    if found is None:
        return int(
            conn.execute(
                insert(Team)
                .values(name=name, customer_id=customer_id, created_at=utcnow())
                .returning(Team.id)
            ).scalar_one()
        )
    current = conn.execute(select(Team.customer_id).where(Team.id == found)).scalar()
    if customer_id is not None and current is None:
        conn.execute(update(Team).where(Team.id == found).values(customer_id=customer_id))
    elif customer_id is not None and current != customer_id:
        raise Conflict(f"team {name!r} already belongs to another customer (id {current})")
    return found


def team_customer(conn: Connection, team_id: int) -> int | None:
    found = conn.execute(select(Team.customer_id).where(Team.id == team_id)).scalar()
    return int(found) if found is not None else None


def check_name(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput(f"a {what} name cannot be empty")
    if len(name) > 200:
        raise InvalidInput(f"a {what} name is at most 200 characters")
    if has_control(name):
        raise InvalidInput(f"a {what} name may not contain control characters (e.g. NUL)")
    return name


def create_key(
    conn: Connection,
    *,
    name: str,
    team: str | None = None,
    customer: str | None = None,
    allowed_models: list[str] | tuple[str, ...] = (),
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    expires_at: datetime | None = None,
    tags: list[str] | tuple[str, ...] = (),
) -> CreatedKey:
    """Create a key (and its team/customer on demand); the secret is returned once."""
    name = check_name(name, "key")
    if name.isdigit():
        raise InvalidInput(f"key name {name!r} cannot be all digits (it would read as an id)")
    for limit, flag in ((rpm_limit, "--rpm"), (tpm_limit, "--tpm")):
        if limit is not None and limit <= 0:
            raise InvalidInput(f"{flag} must be a positive whole number")
    tags = check_key_tags(tags)
    customer_id = ensure_customer(conn, customer) if customer else None
    team_id = ensure_team(conn, team, customer_id=customer_id) if team else None
    if customer_id is None and team_id is not None:
        customer_id = team_customer(conn, team_id)
    secret = new_secret()
    now = utcnow()
    # No savepoint: pysqlite's SAVEPOINT handling would let the key survive a rollback of
    # the caller's transaction. A taken name is caught here; a concurrent creation of the
    # same name fails the whole transaction on the unique constraint (IntegrityError below).
    if conn.execute(select(VirtualKey.id).where(VirtualKey.name == name)).first() is not None:
        raise Conflict(f"a key named {name!r} already exists (pick another name)")
    try:
        key_id = conn.execute(
            insert(VirtualKey)
            .values(
                name=name,
                key_hash=hash_secret(secret),
                key_prefix=secret[:DISPLAY_PREFIX_CHARS] + "…",
                team_id=team_id,
                customer_id=customer_id,
                allowed_models=json.dumps(list(allowed_models)),
                rpm_limit=rpm_limit,
                tpm_limit=tpm_limit,
                enabled=True,
                expires_at=expires_at,
                created_at=now,
                updated_at=now,
            )
            .returning(VirtualKey.id)
        ).scalar_one()
    except IntegrityError:
        raise Conflict(f"a key named {name!r} already exists (pick another name)") from None
    set_key_tags(conn, key_id=int(key_id), tags=tags)
    return CreatedKey(info=get_key(conn, int(key_id)), secret=secret)


def get_key(conn: Connection, key_id: int) -> KeyInfo:
    row = conn.execute(_key_query().where(VirtualKey.id == key_id)).first()
    if row is None:
        raise NotFound(f"no virtual key with id {key_id}")
    return _info(row)


def find_key(conn: Connection, name_or_id: str | int) -> KeyInfo:
    """The key with this id or name (an all-digit argument is tried as an id first)."""
    text = str(name_or_id).strip()
    if has_control(text):  # no name holds one (and PostgreSQL refuses NUL in a query)
        raise NotFound(f"no virtual key named {text!r} (names hold no control characters)")
    row = None
    if text.isdigit():
        row = conn.execute(_key_query().where(VirtualKey.id == int(text))).first()
    if row is None:
        row = conn.execute(_key_query().where(VirtualKey.name == text)).first()
    if row is None:
        raise NotFound(f"no virtual key named {text!r} (list them: metering keys list)")
    return _info(row)


def list_keys(conn: Connection) -> list[KeyInfo]:
    return [_info(row) for row in conn.execute(_key_query().order_by(VirtualKey.id))]


def set_key_enabled(conn: Connection, name_or_id: str | int, *, enabled: bool) -> KeyInfo:
    key = find_key(conn, name_or_id)
    conn.execute(
        update(VirtualKey)
        .where(VirtualKey.id == key.id)
        .values(enabled=enabled, updated_at=utcnow())
    )
    return get_key(conn, key.id)


def set_key_expiry(
    conn: Connection, name_or_id: str | int, *, expires_at: datetime | None
) -> KeyInfo:
    key = find_key(conn, name_or_id)
    conn.execute(
        update(VirtualKey)
        .where(VirtualKey.id == key.id)
        .values(expires_at=expires_at, updated_at=utcnow())
    )
    return get_key(conn, key.id)


def update_key(conn: Connection, key_id: int, **values: Any) -> KeyInfo:
    """Set stored columns of a key (validated by the caller: ``operations.keys``)."""
    conn.execute(
        update(VirtualKey).where(VirtualKey.id == key_id).values(**values, updated_at=utcnow())
    )
    return get_key(conn, key_id)


def authenticate(conn: Connection, secret: str) -> KeyInfo | None:
    """The key whose secret this is, or None. Usable or not: the caller checks
    ``blocked_reason`` so a disabled key gets 403 rather than 401."""
    digest = hash_secret(secret)
    row = conn.execute(_key_query().where(VirtualKey.key_hash == digest)).first()
    if row is None or not hmac.compare_digest(row._mapping["key_hash"], digest):
        return None
    return _info(row)
