"""The group-commit record writer and the key cache, without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from metering.core.billing import bill_request
from metering.core.records import record_values
from metering.core.responses import read_response
from metering.gateway.admission import Admission
from metering.gateway.auth import KeyCache
from metering.gateway.recorder import RecordWriter
from metering.storage.keys import create_key, set_key_enabled

pytestmark = pytest.mark.anyio


def make_record(key_id: int, i: int) -> dict[str, Any]:
    facts = read_response({"usage": {"prompt_tokens": 10, "completion_tokens": 5}}, "openai/x")
    return record_values(
        request_id=f"req-{i}",
        started_at=datetime(2025, 1, 1, 12),
        ended_at=datetime(2025, 1, 1, 12),
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
    )


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
    writer = RecordWriter(engine)
    settled: list[str] = []

    def settle(conn: Connection, record: Mapping[str, Any]) -> None:
        settled.append(record["request_id"])

    try:
        results = await asyncio.gather(
            *(writer.write(make_record(key_id, i), Admission(settle)) for i in range(200))
        )
        assert results == [True] * 200
        assert writer.batches < 200  # group commit: fewer transactions than records
        assert await writer.write(make_record(key_id, 7), Admission(settle)) is False  # a replay
    finally:
        await writer.close()
    assert count(engine, "usage_records") == 200
    assert sorted(settled) == sorted(f"req-{i}" for i in range(200))  # never twice
    with engine.connect() as conn:
        assert conn.execute(text("select sum(requests) from daily_rollups")).scalar() == 200


async def test_settle_runs_in_the_record_transaction(engine: Engine, key_id: int) -> None:
    writer = RecordWriter(engine)

    def settle_fails(conn: Connection, record: Mapping[str, Any]) -> None:
        conn.execute(text("update virtual_keys set name = 'settled'"))
        raise RuntimeError("budget settlement failed")

    def settle_ok(conn: Connection, record: Mapping[str, Any]) -> None:
        seen = conn.execute(
            text("select count(*) from usage_records where request_id = :r"),
            {"r": record["request_id"]},
        ).scalar()
        assert seen == 1  # the record is visible: same transaction, inserted first

    try:
        ok, failed = await asyncio.gather(
            writer.write(make_record(key_id, 1), Admission(settle_ok)),
            writer.write(make_record(key_id, 2), Admission(settle_fails)),
            return_exceptions=True,
        )
    finally:
        await writer.close()
    assert ok is True
    assert isinstance(failed, RuntimeError)
    with engine.connect() as conn:
        ids = conn.execute(text("select request_id from usage_records")).scalars().all()
        names = conn.execute(text("select name from virtual_keys")).scalars().all()
    assert ids == ["req-1"]  # neither the failed record nor its settlement was committed
    assert names == ["app"]


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
