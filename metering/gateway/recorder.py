"""Group commit of usage records.

Each finished request calls ``await writer.write(record, settle)`` and waits for
its own commit. Requests that finish while a commit is running queue up and go
into the next transaction together, so under load one transaction (one thread
hop, one ``write_records`` batch) carries many records. Per batch, in ONE
transaction: each distinct ``prepare(conn, records)`` hook once (it locks, in one
fixed order, every budget row the batch will settle — the batch then cannot deadlock
against a concurrent reservation on PostgreSQL), ``write_records`` (idempotent insert
+ daily rollup), then for each record actually inserted its ``settle(conn, record)``
hook (the budget seam, see ``admission``). If the batch fails, each record is
retried in a transaction of its own, so one bad record (e.g. a failing settle hook)
cannot sink the others; its caller gets the exception.

``write`` returns True if the record was inserted, False if its ``request_id``
was already stored (a replay: nothing is counted twice).

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
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.errors import DatabaseUnavailable
from metering.gateway.admission import BatchHook, PrepareHook, SettleHook
from metering.storage.records import write_records

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


@dataclass(slots=True)
class _Pending:
    record: Mapping[str, Any]
    settle: SettleHook | None
    prepare: PrepareHook | None


class RecordWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._records: Lane[_Pending, bool] = Lane(self._commit)
        self._lanes: list[Lane[Any, Any]] = [self._records]
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False  # a cycle is on the writer's thread
        self._soon = False  # a cycle start is scheduled on the loop
        self._conn: Connection | None = None  # the writer thread's own (see ``begin``)
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.healthy = True  # False after a failed commit, until one succeeds

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

    async def write(
        self,
        record: Mapping[str, Any],
        settle: SettleHook | None = None,
        prepare: PrepareHook | None = None,
    ) -> bool:
        """Commit ``record`` (``prepare`` and ``settle`` in its transaction); wait for it."""
        return await self.submit(self._records, _Pending(record, settle, prepare))

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

    def _commit(self, batch: list[_Pending]) -> list[bool | BaseException]:
        try:
            results: list[bool | BaseException] = list(self._transaction(batch))
        except Exception:
            if len(batch) == 1:
                results = [self._one(batch[0])]
            else:
                results = [self._one(item) for item in batch]
        self.batches += 1
        self.healthy = not any(isinstance(r, DatabaseUnavailable) for r in results)
        return results

    def _one(self, item: _Pending) -> bool | BaseException:
        try:
            return self._transaction([item])[0]
        except SQLAlchemyError as exc:
            log.error("usage record %s not written: %s", item.record.get("request_id"), exc)
            return DatabaseUnavailable(f"usage record could not be written: {exc}")
        except Exception as exc:
            log.exception("usage record %s not written", item.record.get("request_id"))
            return exc

    def _transaction(self, batch: list[_Pending]) -> list[bool]:
        with self.begin() as conn:
            prepared = _prepare(conn, batch)
            inserted = set(write_records(conn, [item.record for item in batch]))
            for item in batch:
                if item.settle is not None and item.record["request_id"] in inserted:
                    item.settle(conn, item.record)
            for state in prepared:
                state.finish(conn)
        return [item.record["request_id"] in inserted for item in batch]


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


def _prepare(conn: Connection, batch: list[_Pending]) -> list[BatchHook]:
    """Each distinct prepare hook once, with the records of the items that carry it;
    the batch states they return (``finish``ed after the settle hooks)."""
    groups: dict[int, tuple[PrepareHook, list[Mapping[str, Any]]]] = {}
    for item in batch:
        if item.prepare is not None:
            groups.setdefault(id(item.prepare), (item.prepare, []))[1].append(item.record)
    states = [hook(conn, records) for hook, records in groups.values()]
    return [state for state in states if state is not None]
