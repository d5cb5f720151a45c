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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.errors import DatabaseUnavailable
from metering.gateway.admission import PrepareHook, SettleHook
from metering.storage.records import write_records

log = logging.getLogger("metering.gateway")

MAX_BATCH = 500


@dataclass(slots=True)
class _Pending:
    record: Mapping[str, Any]
    settle: SettleHook | None
    prepare: PrepareHook | None
    done: asyncio.Future[bool]


class RecordWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.healthy = True  # False after a failed commit, until one succeeds

    def start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="metering-recorder")
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def write(
        self,
        record: Mapping[str, Any],
        settle: SettleHook | None = None,
        prepare: PrepareHook | None = None,
    ) -> bool:
        """Commit ``record`` (``prepare`` and ``settle`` in its transaction); wait for it."""
        self.start()
        assert self._wakeup is not None
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(record, settle, prepare, done))
        self._wakeup.set()
        # The commit goes on even if the request is cancelled meanwhile.
        return await asyncio.shield(done)

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        assert self._wakeup is not None and self._executor is not None
        while self._queue:
            self._wakeup.set()
            await asyncio.sleep(0.001)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._executor.shutdown(wait=True)
        self._task = None

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                results = await asyncio.shield(
                    loop.run_in_executor(self._executor, self._commit, batch)
                )
                for item, result in zip(batch, results, strict=True):
                    if item.done.done():
                        continue
                    if isinstance(result, BaseException):
                        item.done.set_exception(result)
                    else:
                        item.done.set_result(result)

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
        with self._engine.begin() as conn:
            _prepare(conn, batch)
            inserted = set(write_records(conn, [item.record for item in batch]))
            for item in batch:
                if item.settle is not None and item.record["request_id"] in inserted:
                    item.settle(conn, item.record)
        return [item.record["request_id"] in inserted for item in batch]


def _prepare(conn: Connection, batch: list[_Pending]) -> None:
    """Each distinct prepare hook once, with the records of the items that carry it."""
    groups: dict[int, tuple[PrepareHook, list[Mapping[str, Any]]]] = {}
    for item in batch:
        if item.prepare is not None:
            groups.setdefault(id(item.prepare), (item.prepare, []))[1].append(item.record)
    for hook, records in groups.values():
        hook(conn, records)
