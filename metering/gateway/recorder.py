"""Group commit of usage records.

Each finished request calls ``await writer.write(record, settlement)`` and waits for
its own commit. Requests that finish while a commit is running queue up and go
into the next transaction together, so under load one transaction (one thread
hop, one ``storage.ledger.record`` batch: records inserted, rollup, budgets and rate
windows settled) carries many records. If the batch fails, each record is retried in
a transaction of its own, so one bad record cannot sink the others; its caller gets
the exception.

``write`` returns True if the record was inserted, False if its ``request_id``
was already stored (a replay: nothing is counted twice). A record that still cannot
be committed for the database (``DatabaseUnavailable``) is appended to the process's
journal (``storage.journal``, fsync'd) and counts as written: ``replay`` puts it in the
database, with its settlement, once the database answers again. Only if the journal
cannot be written either does the caller get the ``DatabaseUnavailable``.

The writer's one thread is THE database writer of the process: other group commits
(the budget gate's reservations) are ``Lane``s of the same writer (``submit``). Each
cycle takes what every lane has queued and commits lane by lane (reservations first,
their callers woken as soon as theirs is committed) in a single thread hop, so on
SQLite nothing in the process waits on the write lock for another of its writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.core.records import UsageRow
from metering.errors import DatabaseUnavailable
from metering.storage import ledger
from metering.storage.journal import (
    Journal,
    JournalEntry,
    JournalRead,
    journal_files,
    orphan,
    remove_orphan,
)
from metering.storage.ledger import NO_SETTLEMENT, Settlement

log = logging.getLogger("metering.gateway")

MAX_BATCH = 500

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class Lane(Generic[Item, Result]):
    """A group commit on the writer's thread: ``commit(items)`` (blocking) gives one
    result or exception per item, in order; it must not raise."""

    commit: Callable[[list[Item]], list[Result | BaseException]]
    pending: list[tuple[Item, asyncio.Future[Result]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Replayed:
    inserted: int
    duplicate: int
    left: int  # still in a journal (the database failed again)
    torn: int  # unusable lines set aside


class RecordWriter:
    def __init__(self, engine: Engine, journal: Journal | None = None) -> None:
        self._engine = engine
        self.journal = journal
        self._records: Lane[JournalEntry, bool] = Lane(self._commit)
        self._replays: Lane[None, Replayed] = Lane(self._replay)
        self._lanes: list[Lane[Any, Any]] = [self._replays, self._records]
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False  # a cycle is on the writer's thread
        self._soon = False  # a cycle start is scheduled on the loop
        self._conn: Connection | None = None  # the writer thread's own (see ``begin``)
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.healthy = True  # False after a failed commit, until one succeeds
        self.journaled = 0  # records journaled since start (for /health and tests)

    @property
    def queue_depth(self) -> int:
        """Items waiting for the writer's next batch (records, reservations, replays)."""
        return sum(len(lane.pending) for lane in self._lanes)

    def start(self) -> None:
        if self._executor is None:
            self._loop = asyncio.get_running_loop()
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="metering-recorder")

    def lane(
        self, commit: Callable[[list[Item]], list[Result | BaseException]]
    ) -> Lane[Item, Result]:
        """A new group commit run by this writer's thread, before the records' one."""
        lane: Lane[Item, Result] = Lane(commit)
        self._lanes.insert(len(self._lanes) - 1, lane)
        return lane

    async def submit(self, lane: Lane[Item, Result], item: Item) -> Result:
        """Queue ``item`` on ``lane``; its result once its batch is committed."""
        self.start()
        assert self._loop is not None
        done: asyncio.Future[Result] = self._loop.create_future()
        lane.pending.append((item, done))
        if not self._soon:
            # After the loop's current round: what other tasks queue in it joins this batch.
            self._soon = True
            self._loop.call_soon(self._next_cycle)
        # The commit goes on even if the caller is cancelled meanwhile.
        return await asyncio.shield(done)

    async def write(self, record: UsageRow, settlement: Settlement = NO_SETTLEMENT) -> bool:
        """Commit ``record``, settled as ``settlement`` says, in one transaction; wait for it."""
        return await self.submit(self._records, JournalEntry(record, settlement))

    async def replay(self) -> Replayed:
        """Put this process's journal, and those of processes that are gone, in the
        database (on the writer's thread, between two record batches)."""
        return await self.submit(self._replays, None)

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._executor is None:
            return
        while self._running or any(lane.pending for lane in self._lanes):
            self._next_cycle()
            await asyncio.sleep(0.001)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._drop_connection)
        self._executor.shutdown(wait=True)
        self._executor = self._loop = None

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction of the writer (its thread only) on a connection it keeps between
        transactions: no pool checkout, and on PostgreSQL no pre-ping round trip, per
        transaction. Dropped after any error, so the next transaction checks out (and
        pings) a fresh one: a database that went away still fails closed."""
        if self._conn is None:
            self._conn = self._engine.connect()
        try:
            with self._conn.begin():
                yield self._conn
        except BaseException:
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.close()

    def _next_cycle(self) -> None:
        """Start a cycle on the writer's thread with what the lanes have queued, unless
        one is running (its end starts the next): no task in between, the hop back
        delivers the results and starts the next cycle itself."""
        self._soon = False
        if self._running or self._executor is None:
            return
        work: list[tuple[Lane[Any, Any], list[tuple[Any, asyncio.Future[Any]]]]] = []
        for lane in self._lanes:
            if lane.pending:
                work.append((lane, lane.pending[:MAX_BATCH]))
                lane.pending = lane.pending[MAX_BATCH:]
        if not work:
            return
        assert self._loop is not None
        self._running = True
        cycle = self._loop.run_in_executor(self._executor, self._cycle, self._loop, work)
        cycle.add_done_callback(functools.partial(self._cycle_done, work[-1][1]))

    def _cycle_done(
        self, last: list[tuple[Any, asyncio.Future[Any]]], cycle: asyncio.Future[list[Any]]
    ) -> None:
        self._running = False
        _deliver_last(last, cycle)
        self._next_cycle()

    def _cycle(
        self,
        loop: asyncio.AbstractEventLoop,
        work: list[tuple[Lane[Any, Any], list[tuple[Any, asyncio.Future[Any]]]]],
    ) -> list[Any]:
        """One thread hop: each lane's batch committed in turn; its callers woken at once
        (those of the last lane by the hop's return: its results)."""
        results: list[Any] = []
        for index, (lane, batch) in enumerate(work):
            try:
                results = lane.commit([item for item, _ in batch])
            except Exception as exc:  # a lane must not raise; never leave its callers waiting
                log.exception("writer lane failed")
                results = [exc] * len(batch)
            if index < len(work) - 1:
                loop.call_soon_threadsafe(_deliver, batch, results)
        return results

    def _commit(self, batch: list[JournalEntry]) -> list[bool | BaseException]:
        try:
            results: list[bool | BaseException] = list(self._transaction(batch))
        except Exception:
            if len(batch) == 1:
                results = [self._one(batch[0])]
            else:
                results = [self._one(item) for item in batch]
        self.batches += 1
        failed = [i for i, r in enumerate(results) if isinstance(r, DatabaseUnavailable)]
        self.healthy = not failed
        if failed and self.journal is not None:
            try:
                self.journal.append([batch[i] for i in failed])
            except OSError as exc:
                log.error(
                    "%d usage record(s) neither committed nor journaled: %s", len(failed), exc
                )
            else:
                log.warning(
                    "%d usage record(s) journaled to %s (database unavailable); replayed "
                    "when it answers again",
                    len(failed),
                    self.journal.path,
                )
                self.journaled += len(failed)
                for i in failed:
                    results[i] = True
        return results

    def _replay(self, items: list[None]) -> list[Replayed | BaseException]:
        """The replay lane: every journal entry committed exactly once (by request id)."""
        if self.journal is None:
            return [Replayed(0, 0, 0, 0)] * len(items)
        own = self.journal.read() if self.journal.pending else JournalRead()
        result = _replay_read(self, own)
        if result.left == 0 and self.journal.pending:
            self.journal.clear(own)
        for path in journal_files(self.journal.directory):
            if path == self.journal.path:
                continue
            with orphan(path) as read:
                if read is None:
                    continue
                done = _replay_read(self, read)
                if done.left == 0:
                    remove_orphan(path, read)
                result = _sum(result, done)
        return [result] * len(items)

    def _one(self, item: JournalEntry) -> bool | BaseException:
        try:
            return self._transaction([item])[0]
        except SQLAlchemyError as exc:
            log.error("usage record %s not written: %s", item.record.request_id, exc)
            return DatabaseUnavailable(f"usage record could not be written: {exc}")
        except Exception as exc:
            log.exception("usage record %s not written", item.record.request_id)
            return exc

    def _transaction(self, batch: list[JournalEntry]) -> list[bool]:
        with self.begin() as conn:
            return write_batch(conn, batch)


def write_batch(conn: Connection, batch: list[JournalEntry]) -> list[bool]:
    """``storage.ledger.record`` of the batch in ``conn``'s transaction."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return ledger.record(conn, [(e.record, e.settlement) for e in batch], now=now)


def _replay_read(writer: RecordWriter, read: JournalRead) -> Replayed:
    """Commit a journal's entries in batches; ``left``: how many could not be."""
    inserted = duplicate = left = 0
    # A request id once: a batch may not hold it twice (a journal line written again
    # by a crashed replay, or the same record journaled by two attempts).
    seen: set[str] = set()
    entries = []
    for entry in read.entries:
        if entry.record.request_id not in seen:
            seen.add(entry.record.request_id)
            entries.append(entry)
    duplicate = len(read.entries) - len(entries)
    for start in range(0, len(entries), MAX_BATCH):
        batch = entries[start : start + MAX_BATCH]
        try:
            done = writer._transaction(batch)
        except SQLAlchemyError as exc:
            log.warning("journal replay waits for the database: %s", exc)
            left += len(entries) - start
            break
        inserted += sum(done)
        duplicate += len(done) - sum(done)
    if inserted or duplicate:
        log.warning("journal replay: %d record(s) committed, %d already there", inserted, duplicate)
    return Replayed(inserted, duplicate, left, len(read.torn))


def _sum(a: Replayed, b: Replayed) -> Replayed:
    return Replayed(
        a.inserted + b.inserted, a.duplicate + b.duplicate, a.left + b.left, a.torn + b.torn
    )


def _deliver(batch: list[tuple[Any, asyncio.Future[Any]]], results: list[Any]) -> None:
    for (_, done), result in zip(batch, results, strict=True):
        if done.done():
            continue
        if isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)


def _deliver_last(batch: list[Any], cycle: asyncio.Future[list[Any]]) -> None:
    if cycle.cancelled():
        _deliver(batch, [DatabaseUnavailable("the database writer stopped")] * len(batch))
    elif (exc := cycle.exception()) is not None:
        _deliver(batch, [exc] * len(batch))
    else:
        _deliver(batch, cycle.result())
