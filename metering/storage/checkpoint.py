"""WAL checkpoints of a SQLite database, off the writer's path.

By default SQLite checkpoints inside the commit that takes the write-ahead log past
1,000 pages: that commit copies the log into the database file and fsyncs it, and every
request waiting on that group commit waits for the disk too (the gateway's p99 at c=16).
The gateway's engine raises that threshold to ``SAFETY_NET_PAGES`` (so the log stays
bounded even if this thread falls behind) and ``WalCheckpointer`` runs a PASSIVE
checkpoint every ``interval`` seconds on a connection of its own, in its own thread:
PASSIVE never waits for, nor blocks, readers or the writer, and once a checkpoint has
copied the whole log the next write transaction starts it again from the beginning.
On PostgreSQL it does nothing.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.storage.engine import is_sqlite

log = logging.getLogger("metering.storage")

SAFETY_NET_PAGES = 16_384  # ≈ 64 MB of log with 4 KiB pages
INTERVAL_SECONDS = 0.5


class WalCheckpointer:
    def __init__(self, engine: Engine, interval: float = INTERVAL_SECONDS) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # completed PASSIVE checkpoints (for tests)

    def start(self) -> None:
        if self._thread is not None or not is_sqlite(self._engine):
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="metering-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
            except SQLAlchemyError as exc:  # the writer reports a database that went away
                log.debug("WAL checkpoint skipped: %s", exc)
