"""The record writer's journal: a record the database refuses after the upstream call is
journaled (the caller is answered as if committed), then replayed exactly once, with its
settlement, when the database takes writes again."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from metering.gateway.recorder import RecordWriter
from metering.storage.budgets import reserve, set_budget
from metering.storage.journal import Journal, JournalEntry
from metering.storage.ledger import Settlement
from metering.storage.models import Budget, UsageRecord
from tests.helpers import ReadOnlySwitch, assert_budgets_consistent, make_org, record

pytestmark = pytest.mark.anyio

T = datetime(2026, 12, 2, 12)


def count_records(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(UsageRecord)).scalar_one())


async def test_a_refused_record_is_journaled_then_replayed_once(
    engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        org = make_org(conn)
        set_budget(conn, owner_type="key", owner_id=org.key_id, limit_nano=10**9,
                   period="never", now=T)  # fmt: skip
        owners = {"key_id": org.key_id, "team_id": org.team_id, "customer_id": org.customer_id}
        for rid in ("r1", "r2"):
            reserve(conn, request_id=rid, **owners, amount_nano=5_000, now=T, ttl_seconds=3600)
    switch = ReadOnlySwitch(engine)
    writer = RecordWriter(engine, Journal(tmp_path / "journal"))
    budgets = Settlement(budgets=True)
    try:
        assert await writer.write(record(request_id="r1", **owners, cost_nano=700,
                                         started_at=T), budgets)  # fmt: skip
        switch.on = True  # the database stops taking writes after the upstream answered
        row = record(request_id="r2", **owners, cost_nano=900, started_at=T)
        assert await writer.write(row, budgets) is True  # journaled: the client is answered
        assert writer.journal is not None and writer.journal.pending == 1
        assert count_records(engine) == 1 and not writer.healthy
        still_down = await writer.replay()
        assert (still_down.inserted, still_down.left) == (0, 1)
        switch.on = False
        replayed = await writer.replay()
        assert (replayed.inserted, replayed.duplicate, replayed.left) == (1, 0, 0)
        assert writer.journal.pending == 0 and writer.journal.read().entries == []
        again = await writer.replay()
        assert (again.inserted, again.duplicate) == (0, 0)
    finally:
        await writer.close()
    assert count_records(engine) == 2
    with engine.connect() as conn:
        spent, reserved = conn.execute(select(Budget.spent_nano, Budget.reserved_nano)).one()
    assert (spent, reserved) == (1_600, 0)  # as if the database had never failed
    assert_budgets_consistent(engine)


async def test_an_orphan_journal_is_replayed_by_the_next_process(
    engine: Engine, tmp_path: Path
) -> None:
    """A process journaled a record and died: the next one (same folder) replays it once,
    and a record replayed before the crash's truncation is not counted twice."""
    with engine.begin() as conn:
        org = make_org(conn)
    owners = {"key_id": org.key_id, "team_id": org.team_id, "customer_id": org.customer_id}
    dead = Journal(tmp_path)
    rows = [record(request_id=f"o{i}", **owners, cost_nano=100, started_at=T) for i in range(3)]
    dead.append([JournalEntry(r, Settlement()) for r in rows])
    dead.append([JournalEntry(rows[0], Settlement())])  # replayed twice by a crashed replay
    dead.close()
    writer = RecordWriter(engine, Journal(tmp_path))
    try:
        done = await writer.replay()
    finally:
        await writer.close()
    assert (done.inserted, done.duplicate, done.left) == (3, 1, 0)
    assert count_records(engine) == 3
    assert not dead.path.exists()
