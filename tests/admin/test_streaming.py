"""A streamed admin reply: the body leaves in bounded chunks while it is produced, and a
client that goes away stops the producer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

from metering.admin.http import Streamed
from metering.admin.streaming import CHUNK_BYTES, QUEUE_CHUNKS, stream_body

LINE = b"x" * 999 + b"\n"


def test_body_is_sent_in_chunks_as_it_is_written(sqlite_engine: Engine) -> None:
    sent: list[dict[str, Any]] = []
    written_when_sent: list[int] = []
    written = 0

    def write(conn: Connection, sink: Callable[[bytes], int]) -> None:
        nonlocal written
        for _ in range(2_000):  # 2 MB in 1 kB writes
            sink(LINE)
            written += len(LINE)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        written_when_sent.append(written)
        await asyncio.sleep(0)

    asyncio.run(stream_body(sqlite_engine, Streamed(b"text/csv", "x.csv", write), send))
    start, *bodies = sent
    assert start["type"] == "http.response.start" and start["status"] == 200
    data = b"".join(m["body"] for m in bodies)
    assert data == LINE * 2_000
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]
    assert max(len(m["body"]) for m in bodies) < CHUNK_BYTES + len(LINE)
    # the first chunk left long before the last line was written: never held whole
    assert written_when_sent[1] <= (QUEUE_CHUNKS + 2) * (CHUNK_BYTES + len(LINE))


def test_a_client_that_goes_away_stops_the_writer(sqlite_engine: Engine) -> None:
    written = 0

    def write(conn: Connection, sink: Callable[[bytes], int]) -> None:
        nonlocal written
        for _ in range(100_000):  # 100 MB if nothing stopped it
            sink(LINE)
            written += len(LINE)

    calls = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the start, one chunk, then the client is gone
            raise OSError("client went away")

    with pytest.raises(OSError):
        asyncio.run(stream_body(sqlite_engine, Streamed(b"text/csv", "x.csv", write), send))
    assert written < (QUEUE_CHUNKS + 4) * (CHUNK_BYTES + len(LINE))
