"""A streamed admin reply (a CSV export): the rows are rendered in a worker thread from
an iterated query and sent as a chunked ASGI body through a small bounded queue, so
neither side ever holds the whole file; a client that goes away stops the query."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from sqlalchemy import Engine

from metering.admin.http import Streamed
from metering.gateway.responses import Send

log = logging.getLogger("metering.admin")

CHUNK_BYTES = 64 * 1024
QUEUE_CHUNKS = 4  # at most this many chunks wait for the client


class _Gone(Exception):
    """The client went away: the writer stops."""


class _Sink:
    """A binary file the export writes into: ``CHUNK_BYTES`` pieces handed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        self._loop = loop
        self._queue = queue
        self._buffer = bytearray()
        self.gone = threading.Event()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._put(bytes(self._buffer))
            self._buffer.clear()

    def _put(self, item: bytes | None) -> None:
        if self.gone.is_set():
            raise _Gone
        asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop).result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if not self.gone.is_set():
                asyncio.run_coroutine_threadsafe(self._queue.put(None), self._loop).result()


async def stream_body(engine: Engine, streamed: Streamed, send: Send) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    sink = _Sink(loop, queue)

    def produce() -> None:
        try:
            with engine.connect() as conn:
                streamed.write(conn, sink.write)
        except _Gone:
            return
        except Exception:  # the status is sent: the body ends short and it is logged
            log.exception("admin export %s failed midway", streamed.filename)
        finally:
            with contextlib.suppress(_Gone):  # nobody is left to tell
                sink.close()

    disposition = f'attachment; filename="{streamed.filename}"'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", streamed.content_type),
                        (b"content-disposition", disposition)],
        }
    )  # fmt: skip
    worker = loop.run_in_executor(None, produce)
    try:
        while (chunk := await queue.get()) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except BaseException:
        sink.gone.set()
        while not queue.empty():  # unblock a writer waiting on a full queue
            queue.get_nowait()
        raise
    await worker
