"""The gateway's WAL checkpoints: off the commit path, and the log still bounded."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine

from metering.storage.checkpoint import SAFETY_NET_PAGES, WalCheckpointer
from metering.storage.engine import make_engine


def _fill(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS blob (x TEXT)")
        for _ in range(rows):
            conn.exec_driver_sql("INSERT INTO blob VALUES (?)", ("x" * 3000,))


def _wal_frames(engine: Engine) -> tuple[int, int]:
    """(frames in the log, frames already copied into the database)."""
    with engine.connect() as conn:
        _busy, log, done = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    return log, done


def _log_pages_without_checkpoint(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def test_commits_leave_checkpoints_to_the_background_thread(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", wal_autocheckpoint=SAFETY_NET_PAGES)
    checkpointer = WalCheckpointer(engine, interval=0.05)
    try:
        assert _log_pages_without_checkpoint(engine) == SAFETY_NET_PAGES
        # 2,000 rows of 3 kB ≈ 2,000 pages: past SQLite's default of 1,000, so with the
        # default a commit would have checkpointed (and restarted) the log by now.
        for _ in range(4):
            _fill(engine, 500)
        wal = tmp_path / "w.db-wal"
        assert wal.stat().st_size > 1_000 * 4096
        checkpointer.start()
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints >= 2
        log, done = _wal_frames(engine)
        assert log == done > 1_000  # everything copied into the database file
        _fill(engine, 1)  # the next write starts the log again from the beginning
        log, _done = _wal_frames(engine)
        assert 0 < log < 20
    finally:
        checkpointer.stop()
        engine.dispose()
    assert checkpointer._thread is None


def test_default_engines_keep_sqlites_own_checkpoints(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        assert _log_pages_without_checkpoint(engine) == 1_000
    finally:
        engine.dispose()


def test_nothing_to_do_on_postgres(engine: Engine) -> None:
    checkpointer = WalCheckpointer(engine, interval=0.01)
    checkpointer.start()
    if engine.dialect.name == "sqlite":
        assert checkpointer._thread is not None
    else:
        assert checkpointer._thread is None
    checkpointer.stop()
