"""200 concurrent requests through the real process: 200 records, no duplicates, no
losses; replaying the writes does not count anything twice."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from metering.core.records import UsageRow
from metering.storage.records import write_records
from tests.gateway.conftest import Served

pytestmark = pytest.mark.slow

REQUESTS = 200


async def _send_all(served: Served) -> list[str]:
    client = served.async_client()
    try:

        async def one(i: int) -> str:
            if i % 4:
                response = await client.completions.create(
                    model="openai/gpt-4o", prompt=f"request {i}"
                )
                return response.id
            ids = {
                chunk.id
                async for chunk in await client.completions.create(
                    model="openai/gpt-4o", prompt=f"request {i}", stream=True
                )
            }
            [response_id] = ids
            return response_id

        return list(await asyncio.gather(*(one(i) for i in range(REQUESTS))))
    finally:
        await client.close()


def test_200_concurrent_requests_200_records(served: Served) -> None:
    response_ids = asyncio.run(_send_all(served))
    records = served.records()
    assert len(records) == REQUESTS
    assert len({r["request_id"] for r in records}) == REQUESTS
    assert len(set(response_ids)) == REQUESTS
    assert sorted(r["response_id"] for r in records) == sorted(response_ids)
    assert sum(r["stream"] for r in records) == REQUESTS // 4
    assert all(r["status"] == "success" for r in records)
    assert len(served.simulator.received) == REQUESTS
    assert served.rollup_requests() == REQUESTS

    def totals() -> tuple[int, int]:
        with served.engine.connect() as conn:
            rollup = conn.execute(text("select sum(total_cost) from daily_rollups")).scalar()
            recorded = conn.execute(text("select sum(total_cost) from usage_records")).scalar()
        return int(rollup), int(recorded)

    before = totals()
    assert before[0] == before[1] > 0
    replay = [UsageRow.from_mapping(r) for r in records]
    with served.engine.begin() as conn:
        assert write_records(conn, replay) == []
    assert len(served.records()) == REQUESTS
    assert served.rollup_requests() == REQUESTS
    assert totals() == before
