"""Authenticating a request's virtual key, with a short-lived in-memory cache.

A looked-up key (or "no such key") is reused for at most ``ttl`` seconds, so
``metering keys disable`` takes effect within ``ttl`` (default 1 s) in every
server process, while a busy key costs one database read per ``ttl`` instead of
one per request. Concurrent misses for the same key share one read.

With the key, the same read caches whether any budget applies to it (its own, its
team's or its customer's): ``has_budget(key)``. The budget gate skips the worst-case
computation for a key without; the budgets themselves are always read fresh by the
gate's writer, so a new budget binds at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.core.model_patterns import model_matches
from metering.errors import DatabaseUnavailable
from metering.gateway.responses import Refused, Scope, header
from metering.storage.budget_rows import applicable_budget_ids
from metering.storage.keys import SECRET_PREFIX, KeyInfo, hash_secret, utcnow
from metering.storage.keys import authenticate as find_key_by_secret


def key_from_headers(scope: Scope, also: tuple[bytes, ...] = ()) -> str | None:
    """The virtual key from ``Authorization: Bearer …``, ``x-bf-vk`` or a header of
    ``also`` (the Anthropic route's ``x-api-key``); None if absent."""
    for name in (b"x-bf-vk", *also):
        value = header(scope, name)
        if value:
            return value.decode("latin-1").strip()
    auth = header(scope, b"authorization")
    if auth:
        scheme, _, token = auth.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


@dataclass(slots=True)
class _Entry:
    key: KeyInfo | None
    fresh_until: float


class KeyCache:
    def __init__(
        self, engine: Engine, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Future[KeyInfo | None]] = {}
        self._budgeted: dict[int, bool] = {}  # key id → a budget applies (read with the key)

    def has_budget(self, key: KeyInfo) -> bool | None:
        """Whether a budget applied to ``key`` when it was read (None: not known)."""
        return self._budgeted.get(key.id)

    async def lookup(self, secret: str) -> KeyInfo | None:
        """The key for ``secret`` (usable or not), None if unknown.
        Raises DatabaseUnavailable when it has to ask the database and cannot."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        digest = hash_secret(secret)
        entry = self._entries.get(digest)
        if entry is not None and self._clock() < entry.fresh_until:
            return entry.key
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyInfo | None] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            key = await asyncio.to_thread(self._read, secret)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it
            raise
        finally:
            del self._pending[digest]
        self._entries[digest] = _Entry(key, self._clock() + self._ttl)
        future.set_result(key)
        return key

    def _read(self, secret: str) -> KeyInfo | None:
        try:
            with self._engine.connect() as conn:
                key = find_key_by_secret(conn, secret)
                if key is not None:
                    ids = applicable_budget_ids(
                        conn, key_id=key.id, team_id=key.team_id, customer_id=key.customer_id
                    )
                    self._budgeted[key.id] = bool(ids)
                return key
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot read virtual keys: {exc.__class__.__name__}"
            ) from exc

    def forget(self) -> None:
        self._entries.clear()
        self._budgeted.clear()


def model_allowed(key: KeyInfo, model: str) -> bool:
    """Patterns match ``provider/model`` (shell wildcards); a pattern without '/' names a
    provider. No patterns: every model is allowed."""
    if not key.allowed_models:
        return True
    return any(model_matches(p, model) for p in key.allowed_models)


DB_DOWN = "the metering database is unavailable, so the request was not forwarded; retry later"


async def authenticate(keys: KeyCache, scope: Scope, also: tuple[bytes, ...] = ()) -> KeyInfo:
    """The calling virtual key, or the SPEC §4 refusal (401 none or unknown, 403 blocked,
    503 when the database cannot tell); ``also``: more headers that may hold it."""
    secret = key_from_headers(scope, also)
    if secret is None:
        where = "".join(f", '{name.decode()}'" for name in also)
        raise Refused(
            401,
            "virtual_key_required",
            f"no virtual key: send it as 'Authorization: Bearer sk-bf-…', 'x-bf-vk'{where}",
        )
    try:
        key = await keys.lookup(secret)
    except DatabaseUnavailable:
        raise Refused(503, "metering_unavailable", DB_DOWN) from None
    if key is None:
        raise Refused(
            401,
            "virtual_key_not_found",
            "unknown virtual key (check the key, or create one: metering keys create NAME)",
        )
    reason = key.blocked_reason(utcnow())
    if reason is not None:
        raise Refused(403, "virtual_key_blocked", reason)
    return key
