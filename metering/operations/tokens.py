"""Admin token operations (the CLI only: a token cannot mint tokens over the API)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from metering.storage.admin_tokens import (
    CreatedToken,
    TokenInfo,
    check_scopes,
    create_token,
    find_token,
    list_tokens,
    revoke_token,
)
from metering.storage.audit import record_change


def create_token_op(
    conn: Connection, *, name: str, scopes: tuple[str, ...], actor: str
) -> CreatedToken:
    created = create_token(conn, name=name, scopes=check_scopes(scopes))
    record_change(
        conn, actor=actor, action="token.create", target=f"token:{created.info.name}",
        before=None, after=created.info.as_dict(),
    )  # fmt: skip
    return created


def revoke_token_op(conn: Connection, token: str, *, actor: str) -> TokenInfo:
    before = find_token(conn, token)
    after = revoke_token(conn, before.id)
    record_change(
        conn, actor=actor, action="token.revoke", target=f"token:{before.name}",
        before=before.as_dict(), after=after.as_dict(),
    )  # fmt: skip
    return after


def token_rows(conn: Connection) -> list[dict[str, Any]]:
    return [t.as_dict() for t in list_tokens(conn)]
