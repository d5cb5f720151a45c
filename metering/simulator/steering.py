"""What every route shares: the simulator's state (ids, gates), the ``"sim"`` steering
field, and the ways an answer is written (JSON, server-sent events, a cut connection)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web

# An error answer in a route's own shape: (status, message) -> response.
ErrorShape = Callable[[int, str], web.Response]


class State:
    """Answer ids and the gates held requests wait on; lives on the simulator's loop."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._gates: dict[str, asyncio.Event] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    async def hold(self, sim: Mapping[str, Any]) -> None:
        """Wait for ``sim.open_gate(name)`` when the request says ``"hold": name``."""
        if sim.get("hold"):
            await self.gate(str(sim["hold"])).wait()

    def open_all(self) -> None:
        for gate in self._gates.values():
            gate.set()


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[State, web.Request, Any], Awaitable[web.StreamResponse]]


def steering(body: Mapping[str, Any]) -> dict[str, Any]:
    sim_field = body.get("sim")
    return sim_field if isinstance(sim_field, dict) else {}


async def misbehave(sim: Mapping[str, Any], error: ErrorShape) -> web.Response | None:
    """The faults every POST route can be asked for (delay, status, garbage), else None."""
    if sim.get("delay"):
        await asyncio.sleep(float(sim["delay"]))  # not money: seconds
    if sim.get("status"):
        return error(int(sim["status"]), "simulated provider failure")
    if sim.get("garbage"):
        return web.Response(status=200, body=b"<html>not json", content_type="text/html")
    return None


def served_model(body: Mapping[str, Any], sim: Mapping[str, Any], requested: str) -> str | None:
    """The provider/model that serves ``requested``: the first fallback when the primary
    is told to fail (None when there is no fallback)."""
    if not sim.get("fail_primary"):
        return requested
    fallbacks = body.get("fallbacks") or []
    # Unchecked, as the gateway passes it on: a bad fallback breaks the answer.
    return cast(str, fallbacks[0]) if fallbacks else None


def bifrost_error(status: int, message: str) -> web.Response:
    body = {
        "is_bifrost_error": True,
        "status_code": status,
        "error": {"message": message, "type": "provider_error", "code": str(status)},
    }
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def json_answer(answer: object) -> web.Response:
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def steer_answer(answer: dict[str, Any], sim: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``usage`` (a faulty upstream: its own or no usage) and ``answer`` (a strange
    upstream: its own id, model…) to an answer, in place; returns it."""
    if "usage" in sim:
        if sim["usage"] is None:
            answer.pop("usage", None)
        else:
            answer["usage"] = sim["usage"]
    if isinstance(sim.get("answer"), dict):
        answer.update(sim["answer"])
    return answer


class EventStream:
    """A server-sent event stream (``event:`` and ``data:`` lines) that ``cut_after``
    breaks after that many content events, before any terminal event."""

    def __init__(self, request: web.Request, sim: Mapping[str, Any]) -> None:
        self.request = request
        self.response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        cut = sim.get("cut_after")
        self.cut_after = int(cut) if cut is not None else None

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, event: str, data: Mapping[str, Any]) -> None:
        await self.response.write(b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(data)))

    def cut_before(self, content_events: int | None = None) -> bool:
        """Whether to cut now, with ``content_events`` sent (None: all of them)."""
        return self.cut_after is not None and (
            content_events is None or content_events >= self.cut_after
        )

    def cut(self) -> web.StreamResponse:
        assert self.request.transport is not None
        self.request.transport.close()  # a cut stream: no terminal event
        return self.response

    async def close(self) -> web.StreamResponse:
        await self.response.write_eof()
        return self.response
