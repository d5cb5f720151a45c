"""Forwarding one admitted request upstream, relaying the answer, recording it once.

Every request that gets here is recorded exactly once (``RecordWriter.write``),
whatever the outcome, and the record is committed before the client gets the
last byte: a whole response is sent only after its commit; a stream's last event
(``data: [DONE]``, ``response.completed``, ``message_stop``: the shape's reader says
which, ``gateway.shapes``) is held back until then. If the commit fails the client gets
503 ``metering_unavailable`` (or, in a stream, an error event instead of the last one),
in the error shape of its API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from metering.core.attribution import NO_ATTRIBUTION, Attribution
from metering.core.money import format_usd
from metering.core.records import UsageRow, record_row
from metering.core.responses import ResponseFacts, bill_response, read_response
from metering.errors import UpstreamError, UpstreamTimeout, UsageError
from metering.gateway.observer import NullObserver, Observer
from metering.gateway.recorder import RecordWriter
from metering.gateway.responses import Receive, Send, send_bytes, send_error, start_stream
from metering.gateway.shapes import ApiShape, ParsedRequest, StreamReader, Verdict
from metering.gateway.streaming import SseSplitter, estimated_usage
from metering.gateway.upstream import UpstreamClient
from metering.storage.keys import KeyInfo, utcnow
from metering.storage.ledger import Settlement

log = logging.getLogger("metering.gateway")
RELAY, HOLD = Verdict.RELAY, Verdict.HOLD
COST_HEADER = b"x-metering-cost-usd"


@dataclass(slots=True)
class Call:
    """One admitted request on its way through the proxy."""

    request_id: str
    key: KeyInfo
    shape: ApiShape
    request: ParsedRequest
    body: bytes  # as the client sent it
    headers: dict[str, str]  # the client headers its shape forwards
    admission: Settlement
    started_at: datetime = field(default_factory=utcnow)
    attribution: Attribution = NO_ATTRIBUTION
    t0: float = field(default_factory=time.perf_counter)
    upstream_t0: float | None = None  # when the upstream was called
    upstream_seconds: float | None = None  # time at the upstream, once it has answered

    @property
    def requested_model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return self.request.stream


@dataclass(slots=True)
class _StreamState:
    reader: StreamReader
    held: list[bytes] = field(default_factory=list)  # the last event, sent after the commit
    status: str = "success"
    error: str | None = None
    whole: tuple[int, bytes, str] | None = None  # upstream answered without a stream
    failed: tuple[int, str, str, str] | None = None  # failed before the stream started
    started: bool = False  # the client has the response headers


class Proxy:
    def __init__(
        self,
        upstream: UpstreamClient,
        writer: RecordWriter,
        prices: Any,
        *,
        billing_policy: str = "reported",
        observer: Observer | None = None,
    ) -> None:
        self._upstream = upstream
        self._observer: Observer = observer if observer is not None else NullObserver()
        self._writer = writer
        self._prices = prices  # has .book (a PriceBook kept fresh by the app)
        self._policy: Any = billing_policy

    # ---- recording -------------------------------------------------------------------

    def _facts(self, call: Call, response: Mapping[str, Any]) -> tuple[ResponseFacts, str | None]:
        """Facts of a canonical response (``ApiShape.canonical``)."""
        try:
            return read_response(response, call.requested_model), None
        except UsageError as exc:
            bare = {k: v for k, v in response.items() if k != "usage"}
            return read_response(bare, call.requested_model), f"unusable usage: {exc}"

    async def _record(
        self,
        call: Call,
        *,
        status: str,
        http_status: int | None,
        response: Mapping[str, Any] | None = None,
        error: str | None = None,
        answer: str | None = None,
    ) -> UsageRow | None:
        """Write the call's record (committed or journaled): the record, or None (after
        logging) if it could not be kept.
        ``response``: canonical (``ApiShape.canonical``); ``answer``: the text the upstream
        generated; if the response has no usable usage the record is billed from an
        estimate of prompt and answer (never silently $0)."""
        facts, usage_error = self._facts(call, response or {})
        estimated = False
        if answer is not None and (usage_error is not None or not facts.has_usage):
            usage_error = usage_error or "the upstream sent no usage"
            guess = estimated_usage(call.shape.prompt_tokens(call.request.data), answer)
            facts, _ = self._facts(call, {**(response or {}), "usage": guess})
            estimated = True
        bill = bill_response(
            facts,
            self._prices.book,
            requested=call.requested_model,
            on=call.started_at.date(),
            policy=self._policy,
            estimated=estimated,
        )
        record = record_row(
            request_id=call.request_id,
            started_at=call.started_at,
            ended_at=utcnow(),
            key_id=call.key.id,
            team_id=call.key.team_id,
            customer_id=call.key.customer_id,
            requested_model=call.requested_model,
            request_type=call.shape.request_type,
            stream=call.stream,
            status=status,
            http_status=http_status,
            latency_ms=int((time.perf_counter() - call.t0) * 1000),
            facts=facts,
            bill=bill,
            error_message=error or usage_error,
            end_user=call.attribution.end_user,
            end_user_scope=call.attribution.end_user_scope,
            tags=call.attribution.tags_text,
        )
        try:
            await self._writer.write(record, call.admission)
        except Exception as exc:
            log.error("request %s: usage record not committed: %s", call.request_id, exc)
            return None
        if call.upstream_seconds is None and call.upstream_t0 is not None:
            call.upstream_seconds = time.perf_counter() - call.upstream_t0
        self._observer.recorded(
            call.shape.request_type,
            record,
            key_name=call.key.name,
            upstream_seconds=call.upstream_seconds,
        )
        return record

    async def _unavailable(self, send: Send, call: Call) -> None:
        await send_error(
            send,
            503,
            "metering_unavailable",
            "the metering database could not record this request, so its response is "
            "withheld; retry later",
            request_id=call.request_id,
            style=call.shape.errors,
        )

    # ---- whole (non-streamed) responses ----------------------------------------------

    async def forward(self, call: Call, send: Send, receive: Receive) -> None:
        """A whole answer. A client that goes away meanwhile does not stop the upstream
        call (the provider bills what it produces): its answer is awaited and recorded
        as ``cancelled``, billed from its usage."""
        gone = asyncio.create_task(_wait_disconnect(receive))
        call.upstream_t0 = time.perf_counter()
        try:
            async with self._upstream.post(
                call.shape.upstream_path,
                call.body,
                stream=False,
                request_id=call.request_id,
                headers=call.headers,
            ) as response:
                raw = await response.read()
                status, ctype = response.status, response.content_type
            call.upstream_seconds = time.perf_counter() - call.upstream_t0
        except UpstreamTimeout as exc:
            await self._fail(call, send, 504, "upstream_timeout", "timeout", str(exc))
            return
        except UpstreamError as exc:
            await self._fail(call, send, 502, "upstream_error", "upstream_error", str(exc))
            return
        finally:
            client_gone = gone.done()
            gone.cancel()
        if client_gone and status < 400:
            obj = _json_object(raw)
            await self._record(
                call,
                status="cancelled",
                http_status=status,
                response=call.shape.canonical(obj) if obj is not None else None,
                error="client disconnected before the answer",
                answer=call.shape.answer_text(obj) if obj is not None else None,
            )
            return
        await self._finish_whole(call, send, status, raw, ctype)

    async def _fail(
        self, call: Call, send: Send, http: int, error_type: str, status: str, message: str
    ) -> None:
        record = await self._record(call, status=status, http_status=http, error=message)
        if record is None:
            await self._unavailable(send, call)
            return
        await send_error(
            send,
            http,
            error_type,
            message,
            request_id=call.request_id,
            style=call.shape.errors,
            headers=_cost_header(record),
        )

    async def _finish_whole(
        self, call: Call, send: Send, status: int, raw: bytes, ctype: str
    ) -> None:
        obj = _json_object(raw)
        canonical = call.shape.canonical(obj) if obj is not None else None
        if status >= 400:
            message = f"upstream answered {status}"
            record = await self._record(
                call, status="upstream_error", http_status=status, response=canonical, error=message
            )
            if record is None:
                await self._unavailable(send, call)
                return
            await send_bytes(
                send,
                status,
                raw,
                content_type=ctype.encode(),
                request_id=call.request_id,
                headers=_cost_header(record),
            )
            return
        if obj is None:
            message = f"upstream answered {status} with a body that is not a JSON object"
            await self._fail(call, send, 502, "upstream_error", "invalid_response", message)
            return
        record = await self._record(
            call,
            status="success",
            http_status=status,
            response=canonical,
            answer=call.shape.answer_text(obj),
        )
        if record is None:
            await self._unavailable(send, call)
            return
        await send_bytes(
            send, status, raw, request_id=call.request_id, headers=_cost_header(record)
        )

    # ---- streams ---------------------------------------------------------------------

    async def stream(self, call: Call, send: Send, receive: Receive) -> None:
        body = call.shape.upstream_body(call.request, call.body)
        state = _StreamState(call.shape.reader(call.request))
        relay = asyncio.create_task(self._relay(call, body, send, state))
        gone = asyncio.create_task(_wait_disconnect(receive))
        try:
            await asyncio.wait({relay, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not relay.done():
                relay.cancel()
                state.status = "cancelled"
                state.error = "client disconnected before the stream ended"
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        if state.failed is not None and state.status != "cancelled":
            await self._fail(call, send, *state.failed)
            return
        if state.whole is not None and state.status != "cancelled":
            await self._finish_whole(call, send, *state.whole)
            return
        await self._finish_stream(call, send, state)

    async def _relay(self, call: Call, body: bytes, send: Send, state: _StreamState) -> None:
        splitter = SseSplitter()
        reader = state.reader
        call.upstream_t0 = time.perf_counter()
        try:
            async with self._upstream.post(
                call.shape.upstream_path,
                body,
                stream=True,
                request_id=call.request_id,
                headers=call.headers,
            ) as response:
                if response.status >= 400 or "event-stream" not in response.content_type:
                    state.whole = (response.status, await response.read(), response.content_type)
                    return
                await start_stream(send, response.status, call.request_id)
                state.started = True
                held = state.held
                async for chunk in response.chunks():
                    for event in splitter.feed(chunk):
                        verdict = reader.read(event)
                        if verdict is RELAY:
                            await send(
                                {"type": "http.response.body", "body": event, "more_body": True}
                            )
                        elif verdict is HOLD:
                            held.append(event)
                rest = splitter.rest()
                if rest.strip():
                    await _pass_on(reader.read(rest), rest, send, state)
                if not reader.done and reader.usage is None:
                    state.status, state.error = "stream_cut", "upstream ended the stream early"
        except UpstreamTimeout as exc:
            if not state.started:
                state.failed = (504, "upstream_timeout", "timeout", str(exc))
            state.status, state.error = "timeout", str(exc)
        except UpstreamError as exc:
            if not state.started:
                state.failed = (502, "upstream_error", "upstream_error", str(exc))
            state.status, state.error = "stream_cut", str(exc)

    async def _finish_stream(self, call: Call, send: Send, state: _StreamState) -> None:
        reader = state.reader
        if state.error is None and reader.error is not None:
            state.status, state.error = "upstream_error", reader.error
        ok = await self._record(
            call,
            status=state.status,
            http_status=200,
            response=reader.response(),
            error=state.error,
            answer=reader.text(),
        )
        if state.status == "cancelled" or not state.started:
            return
        errors = call.shape.errors
        if not ok:
            tail = errors.event(503, "metering_unavailable", "usage could not be recorded")
        elif reader.done:
            tail = b"".join(state.held)
        elif state.status == "timeout":
            tail = errors.event(504, "upstream_timeout", state.error or "upstream timeout")
        elif state.status == "stream_cut":
            tail = errors.event(502, "upstream_error", state.error or "upstream stream broke")
        else:
            tail = b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def _cost_header(record: UsageRow) -> list[tuple[bytes, bytes]]:
    """``x-metering-cost-usd``: the record's billed cost, a decimal string."""
    return [(COST_HEADER, format_usd(record.total_cost).encode())]


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def _pass_on(verdict: Verdict, event: bytes, send: Send, state: _StreamState) -> None:
    if verdict is Verdict.RELAY:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    elif verdict is Verdict.HOLD:
        state.held.append(event)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
