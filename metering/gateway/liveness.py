"""This ``metering serve`` worker as a row of ``serving_processes``: registered, kept
alive, and recording the calls in flight that dead processes left (README, Reliability).

* ``start`` registers the process (a failure is retried by the next heartbeat or the
  first admission); ``keep_alive`` heartbeats every ``heartbeat_seconds``; ``stop`` (a
  clean shutdown) deletes the row, so what is still in flight of it — records that could
  not commit — is recorded by the next sweep instead of waiting for the threshold.
* ``ensure_alive`` (the budget gate, before each admission batch) gives the id to write
  the batch's calls in flight under; if the last committed heartbeat is older than half
  the staleness threshold it heartbeats first, so no call is admitted under an id that
  another process may already consider dead. A process whose row was forgotten (declared
  dead while it was stalled) registers again under a new id.
* ``sweep`` records the calls in flight of dead processes (``storage.ledger``).

Every transaction runs on the gateway's single writer (``RecordWriter`` lanes), as the
reservations and records do: on SQLite nothing here waits on another writer of the
process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from metering.config import Settings
from metering.core.money import format_usd
from metering.core.pricing import PriceBook
from metering.errors import DatabaseUnavailable
from metering.gateway.recorder import Lane, RecordWriter
from metering.storage.in_flight import deregister_process, heartbeat, register_process
from metering.storage.keys import utcnow
from metering.storage.ledger import SWEEP_BATCH, Swept, record_interrupted

log = logging.getLogger("metering.gateway")


@dataclass(frozen=True, slots=True)
class _Stop:
    """The lane item of a clean stop."""


class ServingProcess:
    def __init__(
        self,
        writer: RecordWriter,
        *,
        heartbeat_seconds: float,
        stale_after_seconds: float,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after_seconds = stale_after_seconds
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.id: int | None = None  # serving_processes.id once registered
        self._alive_at: float | None = None  # monotonic start of the last committed heartbeat
        # Every transaction on ``writer``'s thread (the gateway's single writer).
        self._writer = writer
        self._beats: Lane[_Stop | None, int | None] = writer.lane(self._beat_batch)
        self._sweeps: Lane[PriceBook, Swept] = writer.lane(self._sweep_batch)

    @classmethod
    def from_settings(cls, settings: Settings, *, writer: RecordWriter) -> ServingProcess:
        return cls(
            writer,
            heartbeat_seconds=settings.heartbeat_seconds,
            stale_after_seconds=settings.stale_after_seconds,
        )

    # ---- on the event loop -----------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._submit_beat(None)
        except (SQLAlchemyError, DatabaseUnavailable) as exc:
            log.error("serving process not registered (retried): %s", exc)

    async def keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self._submit_beat(None)
            except (SQLAlchemyError, DatabaseUnavailable) as exc:
                log.warning("heartbeat of serving process %s failed: %s", self.id, exc)

    async def sweep(self, book: PriceBook) -> Swept:
        """Record the calls in flight of dead processes, priced with ``book``."""
        return await self._writer.submit(self._sweeps, book)

    async def stop(self) -> None:
        if self.id is None:
            return
        try:
            await self._submit_beat(_Stop())
        except (SQLAlchemyError, DatabaseUnavailable) as exc:
            log.warning("serving process %s not deregistered: %s", self.id, exc)

    async def _submit_beat(self, item: _Stop | None) -> int | None:
        return await self._writer.submit(self._beats, item)

    # ---- on the writer's thread ------------------------------------------------------

    def ensure_alive(self) -> int:
        """The id to admit calls under (see the module doc); raises SQLAlchemyError."""
        fresh = self._alive_at is not None and (
            time.monotonic() - self._alive_at < self.stale_after_seconds / 2
        )
        if self.id is not None and fresh:
            return self.id
        return self._beat()

    def _beat(self) -> int:
        started = time.monotonic()
        with self._writer.begin() as conn:
            now = utcnow()
            alive = self.id is not None and heartbeat(conn, process_id=self.id, now=now)
            process_id = (
                self.id
                if alive and self.id is not None
                else register_process(conn, host=self.host, pid=self.pid, now=now)
            )
        if process_id != self.id:
            if self.id is not None:
                log.warning(
                    "serving process %d had been declared dead (no heartbeat for %gs): "
                    "registered again as %d",
                    self.id,
                    self.stale_after_seconds,
                    process_id,
                )
            else:
                log.info("registered as serving process %d (pid %d)", process_id, self.pid)
        self.id, self._alive_at = process_id, started
        return process_id

    def _beat_batch(self, items: list[_Stop | None]) -> list[int | BaseException | None]:
        try:
            if any(isinstance(item, _Stop) for item in items):
                if self.id is not None:
                    with self._writer.begin() as conn:
                        deregister_process(conn, process_id=self.id)
                self.id = self._alive_at = None
                return [None] * len(items)
            process_id = self._beat()
        except SQLAlchemyError as exc:
            return [exc] * len(items)
        return [process_id] * len(items)

    def _sweep_batch(self, books: list[PriceBook]) -> list[Swept | BaseException]:
        found = recorded = already = billed = 0
        try:
            while True:
                with self._writer.begin() as conn:
                    swept = record_interrupted(
                        conn,
                        book=books[-1],
                        own_process_id=self.id,
                        stale_after_seconds=self.stale_after_seconds,
                        now=utcnow(),
                    )
                found += swept.found
                recorded += swept.recorded
                already += swept.already
                billed += swept.billed_nano
                if swept.found < SWEEP_BATCH or not swept.recorded + swept.already:
                    break  # all done, or the rest is held by another sweeper
        except SQLAlchemyError as exc:
            return [exc] * len(books)
        if recorded:
            log.warning(
                "recorded %d interrupted call(s) of dead serving process(es), billed $%s "
                "(estimated; listed by `metering reconcile`)",
                recorded,
                format_usd(billed),
            )
        return [Swept(found, recorded, already, billed)] * len(books)
