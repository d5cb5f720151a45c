"""The simulator's server: an aiohttp app on a background thread, its route table, and
the record of what every route received."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from metering.simulator import anthropic, completions, embeddings, models, responses
from metering.simulator.steering import Route, State

ROUTES = (
    Route("POST", "/v1/completions", completions.handle),
    Route("POST", "/v1/chat/completions", completions.handle),
    Route("POST", "/v1/responses", responses.handle),
    Route("POST", "/v1/embeddings", embeddings.handle),
    Route("POST", "/v1/messages", anthropic.handle),
    Route("POST", "/anthropic/v1/messages", anthropic.handle),
    Route("GET", "/v1/models", models.handle),
)


class Simulator:
    """The simulated upstream, served from a background thread (``start``/``stop``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.received: list[dict[str, Any]] = []
        self._state = State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- lifecycle -------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        for route in ROUTES:
            app.router.add_route(route.method, route.path, functools.partial(self._handle, route))
        return app

    def start(self) -> Simulator:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to start()'s caller
                errors.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="metering-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        self._runner = web.AppRunner(self.make_app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        ready.set()
        await self._stopped.wait()
        self._state.open_all()
        await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def open_gate(self, name: str) -> None:
        """Let requests held by ``"sim": {"hold": name}`` go on (thread-safe)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(lambda: self._state.gate(name).set())

    # ---- requests --------------------------------------------------------------------

    async def _handle(self, route: Route, request: web.Request) -> web.StreamResponse:
        body: Any = None
        if request.method != "GET":
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                body = None
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        return await route.handler(self._state, request, body)

    def _response(
        self, body: Mapping[str, Any], sim: Mapping[str, Any], served: str, chat: bool
    ) -> dict[str, Any]:
        """A completions answer without a request (bench/fake_upstream.py cans these)."""
        return completions.respond(self._state, body, sim, served, chat)
