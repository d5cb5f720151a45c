"""Admin token authentication: ``Authorization: Bearer sk-adm-…`` (README, Admin API).

No token → 401 ``admin_token_required``; a virtual key, or a secret that is no token →
401 ``admin_token_not_found``; a revoked token → 401 ``admin_token_revoked``; a token
without the route's scope → 403 ``admin_scope_missing``."""

from __future__ import annotations

from sqlalchemy import Connection

from metering.admin.http import ApiError
from metering.gateway.responses import Scope, header
from metering.storage.admin_tokens import TOKEN_PREFIX, TokenInfo, authenticate_token
from metering.storage.keys import SECRET_PREFIX


def admin_secret(scope: Scope) -> str | None:
    """The bearer token of the request (``x-bf-vk``, a virtual key's header, is not read)."""
    auth = header(scope, b"authorization")
    if not auth:
        return None
    scheme, _, token = auth.decode("latin-1").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate_admin(conn: Connection, secret: str | None, needed: str) -> TokenInfo:
    if secret is None:
        raise ApiError(
            401,
            "admin_token_required",
            "no admin token: send 'Authorization: Bearer sk-adm-…' "
            "(create one: metering admin tokens create NAME)",
        )
    if secret.startswith(SECRET_PREFIX):
        raise ApiError(
            401,
            "admin_token_not_found",
            "a virtual key (sk-bf-…) is not an admin token: send an sk-adm-… token",
        )
    token = authenticate_token(conn, secret) if secret.startswith(TOKEN_PREFIX) else None
    if token is None:
        raise ApiError(
            401, "admin_token_not_found", "unknown admin token (see metering admin tokens list)"
        )
    if token.revoked_at is not None:
        raise ApiError(
            401, "admin_token_revoked", f"admin token {token.name!r} is revoked: use another"
        )
    if needed not in token.scopes:
        raise ApiError(
            403,
            "admin_scope_missing",
            f"admin token {token.name!r} lacks the scope {needed!r} this route needs "
            f"(it has: {', '.join(token.scopes) or 'none'})",
        )
    return token
