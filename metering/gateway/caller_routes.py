"""The routes that call no model: what a caller (by its virtual key) or a scraper reads.

``GET /v1/budget`` (the key's budgets, its team's and customer's:
``budget_gate.budget_payload``), ``GET /v1/requests/{id}`` (the key's own record:
``request_status``), ``GET /v1/models`` (the upstream's list filtered to the key's
models: ``model_list``) and ``GET /metrics`` (``metrics``, optionally behind a bearer).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.config import Settings
from metering.gateway.auth import DB_DOWN, KeyCache, authenticate
from metering.gateway.budget_gate import budget_payload
from metering.gateway.metrics import PrometheusObserver
from metering.gateway.model_list import list_models
from metering.gateway.request_status import record_payload
from metering.gateway.responses import Receive, Refused, Scope, Send, header, send_bytes, send_error
from metering.gateway.upstream import UpstreamClient
from metering.storage.keys import KeyInfo, utcnow
from metering.storage.records import record_of

log = logging.getLogger("metering.gateway")
T = TypeVar("T")


class CallerRoutes:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        keys: KeyCache,
        upstream: UpstreamClient,
        observer: PrometheusObserver | None,  # None: metrics are off (no /metrics route)
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._keys = keys
        self._upstream = upstream
        self._observer = observer

    async def _read(
        self, scope: Scope, send: Send, read: Callable[[Connection, KeyInfo], T], what: str
    ) -> tuple[bool, T | None]:
        """Authenticate the caller and run ``read`` in a thread; (False, None) once the
        refusal (401/403, or 503 if the database fails) has been sent."""
        try:
            key = await authenticate(self._keys, scope)
        except Refused as exc:
            await send_error(send, exc.status, exc.error_type, str(exc))
            return False, None

        def run() -> T:
            with self._engine.connect() as conn:
                return read(conn, key)

        try:
            return True, await asyncio.to_thread(run)
        except SQLAlchemyError as exc:
            log.error("%s not read: %s", what, exc)
            await send_error(send, 503, "metering_unavailable", DB_DOWN)
            return False, None

    async def budget(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/budget``: the calling key's budgets (and its team's and customer's)."""
        ok, payload = await self._read(
            scope, send, lambda conn, key: budget_payload(conn, key, now=utcnow()), "budgets"
        )
        if ok:
            await send_bytes(send, 200, orjson.dumps(payload))

    async def request_record(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/requests/{id}``: the calling key's own record."""
        request_id = scope["path_params"]["request_id"]
        ok, record = await self._read(
            scope,
            send,
            lambda conn, key: record_of(conn, request_id=request_id, key_id=key.id),
            "request record",
        )
        if not ok:
            return
        if record is None:
            message = (
                f"no record of request {request_id!r} for this key (a call is recorded "
                "when it has ended and settled)"
            )
            await send_error(send, 404, "not_found", message)
            return
        await send_bytes(send, 200, orjson.dumps(record_payload(record)))

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models``: the upstream's list, only the key's models (401 without)."""
        try:
            key = await authenticate(self._keys, scope)
            status, body, ctype = await list_models(self._upstream, key)
        except Refused as exc:
            await send_error(send, exc.status, exc.error_type, str(exc))
            return
        await send_bytes(send, status, body, content_type=ctype.encode())

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /metrics``: the Prometheus text format."""
        token = self._settings.metrics_token
        if token is not None:
            sent = header(scope, b"authorization") or b""
            expected = b"Bearer " + token.get_secret_value().encode()
            if not hmac.compare_digest(sent, expected):
                await send_error(
                    send, 401, "metrics_token_required", "send METERING_METRICS_TOKEN as a bearer"
                )
                return
        assert self._observer is not None  # the route exists only with metrics on
        body: Any = await asyncio.to_thread(self._observer.render)
        await send_bytes(send, 200, body, content_type=CONTENT_TYPE_LATEST.encode())
