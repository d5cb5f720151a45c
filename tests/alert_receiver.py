"""A webhook receiver for the alert tests: a real aiohttp server on a free loopback
port, in a thread of its own. It keeps every request it got (headers, body) and answers
500 to the first ``fail_first`` ones."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from metering.core.alerts import EVENT_HEADER, SIGNATURE_HEADER, signature_valid


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event_id(self) -> str:
        return self.headers[EVENT_HEADER]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        return signature_valid(secret, self.body, self.headers[SIGNATURE_HEADER])


@dataclass
class Receiver:
    fail_first: int = 0
    delay_seconds: float = 0.0
    got: list[Received] = field(default_factory=list)  # every request, failed ones too
    taken: list[Received] = field(default_factory=list)  # those answered 200
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            {k.lower(): v for k, v in request.headers.items()}, await request.read()
        )
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        with self._lock:
            self.got.append(received)
            failing = len(self.got) <= self.fail_first
            if not failing:
                self.taken.append(received)
        return web.Response(status=500 if failing else 200, text="no" if failing else "ok")

    def start(self) -> Receiver:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            self.url = f"http://127.0.0.1:{port}/hook"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="alert-receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """The requests answered 200, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.taken) >= count:
                    return list(self.taken)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.taken)} of {count} events received in {timeout} s")
