"""The metering gateway: a raw ASGI app made by ``create_app(settings, engine, upstream)``.

Per request, in order (each refusal is SPEC §4's error, logged, never recorded):
body size (413) → virtual key (401/403) → body validation (400) → the key's
model patterns (403 ``model_blocked``) → database reachable (503) → admission,
the budget hook of ``metering.gateway.admission`` (402/429/403…) → forwarded by
``Proxy`` and recorded exactly once.

Cached in memory: keys (``KeyCache``, at most ``cache_ttl`` stale) and the price
book (reloaded every ``PRICE_REFRESH_SECONDS``). Nothing connects at import time;
``startup`` runs on the ASGI lifespan event or on the first request; it registers this
serving process (``liveness.ServingProcess``), sweeps — the calls in flight of dead
processes become ``interrupted`` records, then expired budget reservations are released
(``Admitter.sweep``) — and starts the background tasks that heartbeat, refresh prices
and sweep again every ``sweep_seconds`` (``METERING_SWEEP_SECONDS``).

Routes are one table (``routes``; ``gateway.routing`` answers 404/405): each model call
route names its API shape (``gateway.shapes``), whose adapter validates the body, bounds
its worst case and reads its usage; everything else here is shape-agnostic.
The routes that call no model (``/v1/budget``, ``/v1/requests/{id}``, ``/v1/models``,
``/metrics``) are in ``gateway.caller_routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from functools import partial

import orjson
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from metering.config import Settings
from metering.errors import DatabaseUnavailable, InvalidInput, RequestRefused
from metering.gateway.admission import AdmitAll, Admitter, RequestInfo
from metering.gateway.alert_delivery import AlertDeliverer
from metering.gateway.attribution import request_attribution
from metering.gateway.auth import DB_DOWN, KeyCache, authenticate, model_allowed
from metering.gateway.budget_gate import BudgetGate
from metering.gateway.caller_routes import CallerRoutes
from metering.gateway.liveness import ServingProcess
from metering.gateway.metrics import PrometheusObserver
from metering.gateway.observer import NullObserver, Observer
from metering.gateway.price_cache import PriceCache
from metering.gateway.proxy import Call, Proxy
from metering.gateway.recorder import RecordWriter
from metering.gateway.responses import (
    Receive,
    Refused,
    Scope,
    Send,
    error_body,
    header,
    read_body,
    send_bytes,
    send_error,
)
from metering.gateway.routing import Mount, Route, Router
from metering.gateway.shapes import SHAPES, ApiShape
from metering.gateway.upstream import AiohttpUpstream, UpstreamClient
from metering.storage.checkpoint import WalCheckpointer
from metering.storage.journal import Journal, default_journal_dir
from metering.storage.keys import utcnow

log = logging.getLogger("metering.gateway")

PRICE_REFRESH_SECONDS = 10.0
JOURNAL_SECONDS = 1.0  # a journal backlog is replayed this often (and at startup)
ORPHAN_SECONDS = 30.0  # journals of processes that are gone are looked for this often
# The model call routes: client path → API shape (``gateway.shapes``).
MODEL_CALLS = {
    "/v1/completions": "text_completion",
    "/v1/chat/completions": "chat_completion",
    "/v1/responses": "responses",
    "/v1/embeddings": "embedding",
    "/v1/messages": "messages",  # Anthropic's own path; also mounted under /anthropic
}


class GatewayApp:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        upstream: UpstreamClient,
        *,
        budgets: bool = False,
        sweep_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.upstream = upstream
        self.keys = KeyCache(engine, ttl=settings.cache_ttl)
        self.prices = PriceCache(engine)
        self.writer = RecordWriter(
            engine, Journal(settings.journal_dir or default_journal_dir(engine.url))
        )
        self.checkpointer = WalCheckpointer(engine)
        self.alerts = AlertDeliverer(engine)  # budget alerts' outbox → their webhooks
        self.process = ServingProcess.from_settings(settings, writer=self.writer)
        # Reservations go through the same single writer as the records.
        self.admission: Admitter = (
            BudgetGate.from_settings(engine, settings, writer=self.writer, process=self.process)
            if budgets
            else AdmitAll()
        )
        # METERING_METRICS=false: no observer work on the hot path and no /metrics route.
        self.metrics = (
            PrometheusObserver(engine, self.writer, key_labels=settings.metrics_key_labels)
            if settings.metrics
            else None
        )
        self.observer: Observer = self.metrics if self.metrics is not None else NullObserver()
        self.proxy = Proxy(
            upstream,
            self.writer,
            self.prices,
            billing_policy=settings.billing_policy,
            observer=self.observer,
        )
        self.sweep_seconds = sweep_seconds if sweep_seconds is not None else settings.sweep_seconds
        self._started = False
        self._background: list[asyncio.Task[None]] = []
        self.router = Router(self.routes())
        # /admin/v1/… (README, Admin API); imported here: metering.admin builds on the
        # gateway's response and routing modules.
        from metering.admin.api import AdminApi
        from metering.admin.routes import admin_endpoints

        self.admin = AdminApi(engine, admin_endpoints())

    def routes(self) -> list[Route | Mount]:
        """Every route the gateway answers; anything else is 404, never passed through."""
        calls = [
            Route(path, ("POST",), partial(self._model_call, SHAPES[kind]), SHAPES[kind].errors)
            for path, kind in MODEL_CALLS.items()
        ]
        caller = CallerRoutes(self.settings, self.engine, self.keys, self.upstream, self.metrics)
        messages = SHAPES["messages"]
        anthropic = Route(
            "/v1/messages", ("POST",), partial(self._model_call, messages), messages.errors
        )
        return [
            *calls,
            Mount("/anthropic", (anthropic,)),
            Route("/v1/models", ("GET",), caller.models),
            Route("/v1/requests/{request_id}", ("GET",), caller.request_record),
            Route("/v1/budget", ("GET",), caller.budget),
            Route("/health", ("GET",), self._health),
            *([Route("/metrics", ("GET",), caller.metrics)] if self.metrics is not None else []),
        ]

    # ---- lifecycle -------------------------------------------------------------------

    async def startup(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            await asyncio.to_thread(self.prices.load)
        except SQLAlchemyError as exc:
            log.error("price book not loaded at startup: %s", exc)
        self.writer.start()
        self.checkpointer.start()
        await self.process.start()
        await self.replay_journal()  # before the sweep: replayed records settle reservations
        await self.sweep()
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self.process.keep_alive()),
            loop.create_task(self.prices.refresh_forever(PRICE_REFRESH_SECONDS)),
            loop.create_task(self._sweep_forever(self.sweep_seconds)),
            loop.create_task(self._replay_forever()),
        ]
        await self.alerts.start()

    async def replay_journal(self) -> None:
        """Journaled records → the database (see ``RecordWriter.replay``); a failure is
        logged and the next round tries again."""
        try:
            await self.writer.replay()
        except Exception:  # never stop the server over its journal; logged, retried
            log.exception("journal replay failed (retried later)")

    async def _replay_forever(self) -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(JOURNAL_SECONDS)
            waited += JOURNAL_SECONDS
            journal = self.writer.journal
            if (journal is not None and journal.pending) or waited >= ORPHAN_SECONDS:
                waited = 0.0
                await self.replay_journal()

    async def sweep(self) -> None:
        """Record what dead processes left in flight (as ``interrupted``), then release
        expired reservations: at startup and every ``sweep_seconds``. A failure is
        logged; the next sweep tries again."""
        try:
            if self.prices.loaded:  # never price them with an empty book (all unpriced)
                await self.process.sweep(self.prices.book)
            await asyncio.to_thread(self.admission.sweep)
        except (SQLAlchemyError, DatabaseUnavailable) as exc:
            log.warning("sweep failed (retried later): %s", exc)

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background = []
        await self.alerts.stop()
        await self.process.stop()
        await self.writer.close()
        if self.writer.journal is not None:
            self.writer.journal.close()
        await asyncio.to_thread(self.checkpointer.stop)
        await self.upstream.close()
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- requests --------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._started:
            await self.startup()
        if scope["path"].startswith(self.admin.prefix):  # its own table: off means 404 for all
            await self.admin(scope, receive, send)
            return
        await self.router(scope, receive, send)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        journal = self.writer.journal
        backlog = {
            "pending": journal.pending if journal is not None else 0,
            "journaled": self.writer.journaled,
        }
        if await self._database_ok():
            body = {"status": "ok", "database": "ok", "journal": backlog}
            await send_bytes(send, 200, orjson.dumps(body))
            return
        message = "the metering database is unreachable"
        body = {**orjson.loads(error_body(503, "metering_unavailable", message)),
                "database": "unavailable", "journal": backlog}  # fmt: skip
        await send_bytes(send, 503, orjson.dumps(body))

    async def _database_ok(self) -> bool:
        def probe() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("select 1"))

        try:
            await asyncio.to_thread(probe)
        except SQLAlchemyError as exc:
            log.error("metering database unreachable: %s", exc)
            return False
        return True

    async def _model_call(
        self, shape: ApiShape, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            call = await self._admit(shape, scope, receive)
        except Refused as exc:
            log.info("refused %s: %d %s: %s", scope["path"], exc.status, exc.error_type, exc)
            self.observer.refused(shape.request_type, exc.status, exc.error_type)
            await send_error(
                send,
                exc.status,
                exc.error_type,
                str(exc),
                headers=exc.headers(),
                style=shape.errors,
            )
            return
        if call.stream:
            await self.proxy.stream(call, send, receive)
        else:
            await self.proxy.forward(call, send, receive)

    async def _admit(self, shape: ApiShape, scope: Scope, receive: Receive) -> Call:
        body = await read_body(scope, receive, limit=self.settings.max_request_bytes)
        key = await authenticate(self.keys, scope, shape.key_headers)
        try:
            request = shape.parse(body)
            attribution = request_attribution(scope, key, request)
        except InvalidInput as exc:
            raise Refused(400, "invalid_request_error", str(exc)) from None
        models = [request.model, *request.fallbacks]
        blocked = [m for m in models if not model_allowed(key, m)]
        if blocked:
            raise Refused(
                403,
                "model_blocked",
                f"virtual key {key.name!r} may not use {blocked[0]} "
                f"(allowed: {', '.join(key.allowed_models)})",
            )
        if not self.writer.healthy and not await self._database_ok():
            raise Refused(503, "metering_unavailable", DB_DOWN)
        if not self.prices.loaded:
            # Never meter with an empty price book (every record would be unpriced).
            try:
                await asyncio.to_thread(self.prices.load)
            except SQLAlchemyError:
                raise Refused(503, "metering_unavailable", DB_DOWN) from None
        request_id, started_at = uuid.uuid4().hex, utcnow()
        info = RequestInfo(
            request_id=request_id,
            started_at=started_at,
            requested_model=request.model,
            shape=shape,
            fallbacks=request.fallbacks,
            stream=request.stream,
            body=request.data,
            body_bytes=len(body),
            prices=self.prices.book,
            has_budget=self.keys.has_budget(key),
            attribution=attribution,
        )
        try:
            admission = await self.admission.admit(key, info)
        except RequestRefused as exc:
            raise Refused(
                exc.status, exc.error_type, str(exc), retry_after=exc.retry_after
            ) from None
        except DatabaseUnavailable:
            raise Refused(503, "metering_unavailable", DB_DOWN) from None
        return Call(
            request_id=request_id,
            key=key,
            shape=shape,
            request=request,
            body=body,
            headers=_forwarded(scope, shape.forwarded_headers),
            admission=admission,
            started_at=started_at,
            attribution=attribution,
        )


def _forwarded(scope: Scope, names: tuple[bytes, ...]) -> dict[str, str]:
    """The client headers an API shape sends upstream (none for most)."""
    found = {}
    for name in names:
        value = header(scope, name)
        if value is not None:
            found[name.decode()] = value.decode("latin-1")
    return found


def create_app(
    settings: Settings,
    engine: Engine,
    upstream: UpstreamClient | None = None,
    *,
    budgets: bool = False,
    sweep_seconds: float | None = None,
) -> GatewayApp:
    """The ASGI app. ``upstream`` defaults to an aiohttp client for ``settings.upstream_url``;
    ``budgets``: enforce budgets and rate limits (``BudgetGate``), as ``metering serve``
    does; without, every request is admitted and nothing settles."""
    if upstream is None:
        key = settings.upstream_api_key
        upstream = AiohttpUpstream(
            settings.upstream_url,
            api_key=key.get_secret_value() if key is not None else None,
            timeout=settings.upstream_timeout,
        )
    return GatewayApp(settings, engine, upstream, budgets=budgets, sweep_seconds=sweep_seconds)
