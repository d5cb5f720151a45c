"""Admin API tokens (README, Admin API).

A token is ``sk-adm-`` + 43 url-safe random characters; like a virtual key, only its
sha256 digest and a display prefix are stored, so it is shown once, at creation. A
token carries scopes (``SCOPES``; all of them by default) and may be revoked (kept,
listed, refused). ``authenticate_token`` is the admin API's lookup by secret.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from metering.errors import Conflict, InvalidInput, NotFound
from metering.storage.keys import check_name, hash_secret, iso_utc, utcnow
from metering.storage.models import AdminToken

TOKEN_PREFIX = "sk-adm-"
DISPLAY_PREFIX_CHARS = 11  # "sk-adm-" + 4 characters of the secret
SCOPES = (
    "keys:read",
    "keys:write",
    "budgets:read",
    "budgets:write",
    "reports:read",
    "prices:read",
    "prices:write",
    "audit:read",
)


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Known scopes, without repeats, in ``SCOPES`` order; none given → every scope."""
    if not scopes:
        return SCOPES
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r} (scopes: {', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in scopes)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "status": "revoked" if self.revoked_at is not None else "active",
            "created_at": iso_utc(self.created_at),
            "revoked_at": iso_utc(self.revoked_at) if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class CreatedToken:
    info: TokenInfo
    secret: str  # shown once; never stored


def _info(row: Row[Any]) -> TokenInfo:
    m = row._mapping
    return TokenInfo(
        id=m["id"],
        name=m["name"],
        prefix=m["token_prefix"],
        scopes=tuple(s for s in m["scopes"].split(",") if s),
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )


def create_token(conn: Connection, *, name: str, scopes: tuple[str, ...]) -> CreatedToken:
    name = check_name(name, "token")
    if name.isdigit():
        raise InvalidInput(f"token name {name!r} cannot be all digits (it would read as an id)")
    if name == "cli":
        raise InvalidInput("'cli' names the command line in the audit log: pick another name")
    if conn.execute(select(AdminToken.id).where(AdminToken.name == name)).first() is not None:
        raise Conflict(f"an admin token named {name!r} already exists (pick another name)")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = conn.execute(
        insert(AdminToken)
        .values(
            name=name,
            token_hash=hash_secret(secret),
            token_prefix=secret[:DISPLAY_PREFIX_CHARS] + "…",
            scopes=",".join(check_scopes(scopes)),
            created_at=utcnow(),
        )
        .returning(AdminToken.id)
    ).scalar_one()
    return CreatedToken(info=find_token(conn, int(token_id)), secret=secret)


def find_token(conn: Connection, name_or_id: str | int) -> TokenInfo:
    text = str(name_or_id).strip()
    row = None
    if text.isdigit():
        row = conn.execute(select(AdminToken).where(AdminToken.id == int(text))).first()
    if row is None:
        row = conn.execute(select(AdminToken).where(AdminToken.name == text)).first()
    if row is None:
        raise NotFound(f"no admin token named {text!r} (list them: metering admin tokens list)")
    return _info(row)


def list_tokens(conn: Connection) -> list[TokenInfo]:
    return [_info(r) for r in conn.execute(select(AdminToken).order_by(AdminToken.id))]


def revoke_token(conn: Connection, name_or_id: str | int) -> TokenInfo:
    token = find_token(conn, name_or_id)
    if token.revoked_at is None:
        conn.execute(
            update(AdminToken).where(AdminToken.id == token.id).values(revoked_at=utcnow())
        )
    return find_token(conn, token.id)


def any_active_token(conn: Connection) -> bool:
    """Whether an unrevoked admin token exists: the admin API is on only then (revoking
    the last token turns it off again)."""
    query = select(func.count()).select_from(AdminToken).where(AdminToken.revoked_at.is_(None))
    return bool(conn.execute(query).scalar())


def authenticate_token(conn: Connection, secret: str) -> TokenInfo | None:
    """The token whose secret this is (revoked or not), or None."""
    digest = hash_secret(secret)
    row = conn.execute(select(AdminToken).where(AdminToken.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row._mapping["token_hash"], digest):
        return None
    return _info(row)
