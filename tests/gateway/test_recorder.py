"""The group-commit record writer and the key cache, without HTTP."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import Engine, text

from metering.core.billing import bill_request
from metering.core.records import UsageRow, record_row
from metering.core.responses import read_response
from metering.gateway.auth import KeyCache
from metering.gateway.recorder import RecordWriter
from metering.storage.budgets import reserve, set_budget
from metering.storage.keys import create_key, set_key_enabled
from metering.storage.ledger import Settlement
from tests.helpers import assert_budgets_consistent

pytestmark = pytest.mark.anyio

AT = datetime(2025, 1, 1, 12)
BUDGETS = Settlement(budgets=True)


def make_record(key_id: int, i: int) -> UsageRow:
    facts = read_response({"usage": {"prompt_tokens": 10, "completion_tokens": 5}}, "openai/x")
    return record_row(
        request_id=f"req-{i}",
        started_at=AT,
        ended_at=AT,
        key_id=key_id,
        team_id=None,
        customer_id=None,
        requested_model="openai/x",
        request_type="text_completion",
        stream=False,
        status="success",
        http_status=200,
        latency_ms=1,
        facts=facts,
        bill=bill_request(facts.usage, None),
    )._replace(total_cost=1_000 + i)


def budget_of(engine: Engine, key_id: int, requests: range) -> None:
    with engine.begin() as conn:
        set_budget(conn, owner_type="key", owner_id=key_id, limit_nano=10**12, period="never",
                   now=AT)  # fmt: skip
        for i in requests:
            reserve(conn, request_id=f"req-{i}", key_id=key_id, team_id=None, customer_id=None,
                    amount_nano=50_000, now=AT, ttl_seconds=3600)  # fmt: skip


def counters(engine: Engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        spent, reserved = conn.execute(text("select spent_nano, reserved_nano from budgets")).one()
        held = conn.execute(text("select count(*) from reservations")).scalar_one()
        marks = conn.execute(text("select count(*) from budget_settlements")).scalar_one()
    return int(spent), int(reserved), int(held), int(marks)


@pytest.fixture
def key_id(engine: Engine) -> int:
    with engine.begin() as conn:
        return create_key(conn, name="app").info.id


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"select count(*) from {table}")).scalar_one())  # noqa: S608


async def test_concurrent_writes_share_transactions_and_replays_count_once(
    engine: Engine, key_id: int
) -> None:
    budget_of(engine, key_id, range(200))
    writer = RecordWriter(engine)
    try:
        results = await asyncio.gather(
            *(writer.write(make_record(key_id, i), BUDGETS) for i in range(200))
        )
        assert results == [True] * 200
        assert writer.batches < 200  # group commit: fewer transactions than records
        assert await writer.write(make_record(key_id, 7), BUDGETS) is False  # a replay
    finally:
        await writer.close()
    assert count(engine, "usage_records") == 200
    # every record settled exactly once: its reservation gone, its cost spent
    assert counters(engine) == (sum(1_000 + i for i in range(200)), 0, 0, 200)
    with engine.connect() as conn:
        assert conn.execute(text("select sum(requests) from daily_rollups")).scalar() == 200
    assert_budgets_consistent(engine)


async def test_a_record_and_its_settlement_commit_together_or_not_at_all(
    engine: Engine, key_id: int
) -> None:
    budget_of(engine, key_id, range(1, 3))
    writer = RecordWriter(engine)  # no journal: the caller sees the failure
    unstorable = make_record(key_id, 2)._replace(total_tokens=2**63)  # no BIGINT holds it
    try:
        ok, failed = await asyncio.gather(
            writer.write(make_record(key_id, 1), BUDGETS),
            writer.write(unstorable, BUDGETS),
            return_exceptions=True,
        )
    finally:
        await writer.close()
    assert ok is True
    assert isinstance(failed, Exception)  # one bad record does not sink the batch
    with engine.connect() as conn:
        ids = conn.execute(text("select request_id from usage_records")).scalars().all()
    assert ids == ["req-1"]
    # req-1 settled; req-2 neither recorded nor settled: its reservation is still held
    assert counters(engine) == (1_001, 50_000, 1, 1)
    assert_budgets_consistent(engine)


async def test_a_disabled_key_is_refused_once_the_cache_ttl_has_passed(engine: Engine) -> None:
    with engine.begin() as conn:
        secret = create_key(conn, name="app").secret
    now = [0.0]
    cache = KeyCache(engine, ttl=1.0, clock=lambda: now[0])
    first = await cache.lookup(secret)
    assert first is not None and first.enabled
    with engine.begin() as conn:
        set_key_enabled(conn, "app", enabled=False)
    now[0] = 0.5
    cached = await cache.lookup(secret)
    assert cached is not None and cached.enabled  # at most ttl stale
    now[0] = 1.0
    fresh = await cache.lookup(secret)
    assert fresh is not None and not fresh.enabled
    assert await cache.lookup("sk-bf-unknown") is None
    assert await cache.lookup("not-a-virtual-key") is None
