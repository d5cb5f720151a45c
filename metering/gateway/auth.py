"""Authenticating a request's virtual key, with a short-lived in-memory cache.

A looked-up key (or "no such key") is reused for at most ``ttl`` seconds, so
``metering keys disable`` takes effect within ``ttl`` (default 1 s) in every
server process, while a busy key costs one database read per ``ttl`` instead of
one per request. Concurrent misses for the same key share one read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.errors import DatabaseUnavailable
from metering.gateway.responses import Scope, header
from metering.storage.keys import SECRET_PREFIX, KeyInfo, authenticate, hash_secret


def key_from_headers(scope: Scope) -> str | None:
    """The virtual key from ``Authorization: Bearer …`` or ``x-bf-vk``; None if absent."""
    value = header(scope, b"x-bf-vk")
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
                return authenticate(conn, secret)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot read virtual keys: {exc.__class__.__name__}"
            ) from exc

    def forget(self) -> None:
        self._entries.clear()
