"""A deliberately minimal upstream for the benches: raw asyncio HTTP/1.1 (keep-alive,
Content-Length bodies), canned answers, so it is never the bottleneck.

    python bench/fake_upstream.py --port 9100 [--chunks 7]

POST with ``"stream": true`` in the body gets an SSE stream of ``--chunks`` events
(the last carries the usage) then ``data: [DONE]``, each event its own chunked write;
any other POST gets one completions response (the simulator's shape, with usage).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from typing import Any

import orjson

from metering.simulator import Simulator

MODEL = "openai/gpt-4o-mini"


def canned(chunks: int) -> tuple[bytes, list[bytes]]:
    """(JSON response body, SSE events) as the simulator would answer ``MODEL``."""
    sim = Simulator()
    body = {"model": MODEL, "prompt": "Say hello to the metering bench", "max_tokens": 14}
    whole: dict[str, Any] = sim._response(body, {}, MODEL, False)
    words = whole["choices"][0]["text"].split(" ")
    content = max(chunks - 1, 1)
    size = -(-len(words) // content)
    pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)][:content]
    base = {k: whole[k] for k in ("id", "created", "model")} | {"object": "text_completion"}
    events = []
    for i, piece in enumerate(pieces):
        choice = {
            "index": 0,
            "text": piece,
            "finish_reason": "stop" if i == len(pieces) - 1 else None,
        }
        events.append({**base, "choices": [choice], "extra_fields": whole["extra_fields"]})
    events.append(
        {**base, "choices": [], "usage": whole["usage"], "extra_fields": whole["extra_fields"]}
    )
    sse = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    return orjson.dumps(whole), sse


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream(asyncio.Protocol):
    def __init__(self, plain: bytes, events: list[bytes]) -> None:
        self.buf = b""
        self.plain = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(plain), plain)
        )
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        self.stream = [head + _chunk(events[0])] + [_chunk(e) for e in events[1:]] + [b"0\r\n\r\n"]
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(
                    head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]
                )
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            assert self.transport is not None
            if b'"stream":true' in body.replace(b" ", b""):
                asyncio.get_running_loop().create_task(self._stream())
            else:
                self.transport.write(self.plain)

    async def _stream(self) -> None:
        for part in self.stream:  # one write per event: the relay sees them one by one
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(part)
            await asyncio.sleep(0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, chunks: int) -> None:
    plain, events = canned(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(plain, events), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=7, help="SSE data events per stream")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.chunks))


if __name__ == "__main__":
    main()
