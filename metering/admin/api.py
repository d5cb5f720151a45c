"""The admin API's ASGI app: off (404 for every path, SPEC §4 body) until an unrevoked
admin token exists; then each route authenticates its token and scope, checks its
input, and runs its operation in a worker thread — in one transaction with its audit
row and, for a ``POST`` with an ``Idempotency-Key``, the stored answer (README, Admin
API: idempotency)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from functools import partial

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from metering.admin.auth import admin_secret, authenticate_admin
from metering.admin.endpoint import Endpoint
from metering.admin.http import AdminRequest, ApiError, Streamed, from_domain, parse_query
from metering.admin.openapi import openapi_document
from metering.admin.streaming import stream_body
from metering.errors import MeteringError
from metering.gateway.responses import (
    Receive,
    Refused,
    Scope,
    Send,
    error_body,
    header,
    read_body,
    send_bytes,
)
from metering.gateway.routing import Mount, Route, Router
from metering.storage.admin_tokens import any_active_token
from metering.storage.budget_rows import begin_write
from metering.storage.idempotency import hold_key, store_response, stored_response
from metering.storage.keys import utcnow

log = logging.getLogger("metering.admin")

PREFIX = "/admin/v1"
MAX_BODY_BYTES = 32 * 1024 * 1024  # a LiteLLM price table is a few MB
MAX_IDEMPOTENCY_KEY = 200
REPLAYED = (b"idempotent-replayed", b"true")

Outcome = tuple[int, bytes, list[tuple[bytes, bytes]]] | Streamed


def _error(exc: ApiError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return exc.status, error_body(exc.status, exc.error_type, str(exc)), []


class AdminApi:
    def __init__(self, engine: Engine, endpoints: list[Endpoint]) -> None:
        self._engine = engine
        self.prefix = PREFIX
        self.endpoints = endpoints
        routes: list[Route | Mount] = [
            Route(e.path, (e.method,), partial(self._serve, e)) for e in endpoints
        ]
        routes.append(Route("/openapi.json", ("GET",), self._openapi))
        self.router = Router([Mount(PREFIX, tuple(routes))])
        self._document = orjson.dumps(openapi_document(endpoints))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            enabled = await asyncio.to_thread(self._enabled)
        except SQLAlchemyError as exc:
            log.error("admin tokens not read: %s", exc)
            await _send(send, _error(ApiError(503, "metering_unavailable", _DB_DOWN)))
            return
        if not enabled:
            message = (
                f"no endpoint {scope['path']} (the admin API is off until an admin token "
                "exists: metering admin tokens create NAME)"
            )
            await _send(send, _error(ApiError(404, "not_found", message)))
            return
        await self.router(scope, receive, send)

    def _enabled(self) -> bool:
        with self._engine.connect() as conn:
            return any_active_token(conn)

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, self._document)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(scope, receive, limit=MAX_BODY_BYTES)
        except Refused as exc:
            await _send(send, _error(ApiError(exc.status, exc.error_type, str(exc))))
            return
        outcome = await asyncio.to_thread(self._run, endpoint, scope, admin_secret(scope), body)
        if isinstance(outcome, Streamed):
            await stream_body(self._engine, outcome, send)
        else:
            await _send(send, outcome)

    def _run(
        self,
        endpoint: Endpoint,
        scope: Scope,
        secret: str | None,
        body: bytes,
    ) -> Outcome:
        try:
            opened = self._engine.begin() if endpoint.writes else self._engine.connect()
            with opened as conn:
                return self._handle(conn, endpoint, scope, secret, body)
        except ApiError as exc:
            return _error(exc)
        except MeteringError as exc:
            return _error(from_domain(exc))
        except IntegrityError:  # a concurrent change took a unique name first
            return _error(ApiError(409, "conflict", "a concurrent change conflicted: retry"))
        except SQLAlchemyError as exc:
            log.error("admin %s %s failed: %s", endpoint.method, endpoint.path, exc)
            return _error(ApiError(503, "metering_unavailable", _DB_DOWN))

    def _handle(
        self,
        conn: Connection,
        endpoint: Endpoint,
        scope: Scope,
        secret: str | None,
        body: bytes,
    ) -> Outcome:
        """Authenticate, check the query, replay or run, store the answer to replay."""
        if endpoint.writes:
            begin_write(conn)  # SQLite: writers queue here, so a duplicate then replays
        token = authenticate_admin(conn, secret, endpoint.scope)
        query = parse_query(scope.get("query_string", b""), endpoint.query)
        idempotency_key = _idempotency_key(scope, endpoint)
        digest = _request_hash(scope, body)
        if idempotency_key is not None:
            hold_key(conn, token_id=token.id, key=idempotency_key)
            replay = self._replay(conn, token.id, idempotency_key, digest)
            if replay is not None:
                return replay
        request = AdminRequest(
            token=token, path_params=dict(scope.get("path_params", {})), query=query, body=body
        )
        result = endpoint.handler(conn, request)
        if isinstance(result, Streamed):
            return result
        payload = orjson.dumps(result.body)
        if idempotency_key is not None:
            kept = {**result.body, **dict.fromkeys(endpoint.redact)}
            store_response(
                conn,
                token_id=token.id,
                key=idempotency_key,
                request_hash=digest,
                status=result.status,
                body=orjson.dumps(kept).decode(),
                now=utcnow(),
            )
        return result.status, payload, []

    def _replay(
        self, conn: Connection, token_id: int, key: str, digest: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """The stored answer to this key (None: none), 422 if it was another request."""
        stored = stored_response(conn, token_id=token_id, key=key, now=utcnow())
        if stored is None:
            return None
        if stored.request_hash != digest:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was used for another request in the last 24 hours: "
                "send a new key for a new request",
            )
        return stored.status, stored.body.encode(), [REPLAYED]


_DB_DOWN = "the metering database is unavailable; retry later"


def _idempotency_key(scope: Scope, endpoint: Endpoint) -> str | None:
    raw = header(scope, b"idempotency-key")
    if raw is None or endpoint.method != "POST":
        return None
    key = raw.decode("latin-1").strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ApiError(
            400,
            "invalid_request_error",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
        )
    return key


def _request_hash(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b"")):
        digest.update(part + b"\n")
    digest.update(body)
    return digest.hexdigest()


async def _send(send: Send, outcome: tuple[int, bytes, list[tuple[bytes, bytes]]]) -> None:
    status, body, headers = outcome
    await send_bytes(send, status, body, headers=headers)
