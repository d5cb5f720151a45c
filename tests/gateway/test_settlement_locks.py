"""The recorder's batch settles budgets without deadlocking against a reservation on
PostgreSQL: it locks every budget of the batch up front, in ascending id order (the
order ``reserve`` uses), before inserting anything.

Reproduction: a batch of [bob's record, alice's record] (alice's budget has the lower
id) while a reservation already holds alice's budget and is about to lock bob's.
Settling record by record would lock bob's budget, then wait for alice's: a deadlock
(PostgreSQL aborts one side). With the up-front lock the batch waits for alice's
budget holding nothing, so the reservation gets bob's budget at once."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text

from metering.gateway.recorder import RecordWriter
from metering.storage.budgets import reserve, set_budget
from metering.storage.keys import utcnow
from metering.storage.ledger import Settlement
from metering.storage.models import Budget
from tests.helpers import assert_budgets_consistent, make_org, record

pytestmark = pytest.mark.anyio

T = utcnow().replace(microsecond=0) - timedelta(minutes=5)
DEADLINE_SECONDS = 30  # only guards against a hang; nothing is timed


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_batch_locks_its_budgets_in_id_order_before_settling(engine: Engine) -> None:
    with engine.begin() as conn:
        org = make_org(conn)
        for key_id in (org.key_id, org.other_key_id):  # budget ids 1 (alice), 2 (bob)
            set_budget(
                conn, owner_type="key", owner_id=key_id, limit_nano=10**12, period="never", now=T
            )
        for request_id, key_id in (("alice-1", org.key_id), ("bob-1", org.other_key_id)):
            reserve(
                conn,
                request_id=request_id,
                key_id=key_id,
                team_id=None,
                customer_id=None,
                amount_nano=1000,
                now=T,
                ttl_seconds=3600,
            )
        alice_budget, bob_budget = conn.execute(select(Budget.id).order_by(Budget.id)).scalars()
    batch = [
        record(
            request_id=rid, key_id=kid, team_id=None, customer_id=None, cost_nano=700, started_at=T
        )
        for rid, kid in (("bob-1", org.other_key_id), ("alice-1", org.key_id))
    ]

    holder = engine.connect()
    tx = holder.begin()
    holder.execute(text("SET LOCAL lock_timeout = '20s'"))
    holder.execute(select(Budget.id).where(Budget.id == alice_budget).with_for_update()).all()
    writer = RecordWriter(engine)
    writes = [asyncio.create_task(writer.write(r, Settlement(budgets=True))) for r in batch]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not await asyncio.to_thread(_someone_waits_for_a_lock, engine) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert await asyncio.to_thread(_someone_waits_for_a_lock, engine)  # the batch is blocked

    # Like a reserve that holds alice's budget and now locks bob's: it must not wait.
    got: list[int] = []

    def lock_bob() -> None:
        got.extend(
            holder.execute(
                select(Budget.id).where(Budget.id == bob_budget).with_for_update(nowait=True)
            ).scalars()
        )

    thread = threading.Thread(target=lock_bob)
    thread.start()
    thread.join()
    assert got == [bob_budget]  # NOWAIT: bob's budget was free — the batch holds nothing
    tx.commit()
    holder.close()
    assert await asyncio.gather(*writes) == [True, True]
    await writer.close()
    assert writer.batches == 1  # still one group commit
    with engine.connect() as conn:
        rows = conn.execute(select(Budget.spent_nano, Budget.reserved_nano).order_by(Budget.id))
        assert [tuple(r) for r in rows] == [(700, 0), (700, 0)]
    assert_budgets_consistent(engine)


def _someone_waits_for_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        waiting = conn.execute(
            text(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return int(waiting) > 0
