"""Calls in flight through the gateway in process (``create_app`` + ``BudgetGate``, as
``metering serve`` builds it): every admitted request has its ``calls_in_flight`` row from
its admission until its record commits; the serving process registers, heartbeats,
registers again once declared dead, and deletes its row at a clean stop; the sweep
records a dead process's calls."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from metering.core.interrupted import InFlightCall
from metering.core.usage import estimate_tokens
from metering.simulator import Simulator
from metering.storage.budgets import reserve
from metering.storage.in_flight import insert_calls, register_process
from metering.storage.keys import create_key, utcnow
from metering.storage.models import CallInFlight, Reservation, ServingProcess, VirtualKey
from tests.reliability.conftest import Gateway, new_gateway

FAST = {"heartbeat_seconds": 0.2, "stale_after_seconds": 1.0, "sweep_seconds": 0.2}
PROMPT = "where does the money go?"
DEADLINE_SECONDS = 30  # only guards against a hang

pytestmark = pytest.mark.anyio


@pytest.fixture
async def gateway(engine: Engine, simulator: Simulator) -> AsyncIterator[Gateway]:
    made = new_gateway(engine, simulator)
    yield made
    for app in made.apps:
        await app.shutdown()


def in_flight(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(CallInFlight.__table__)).mappings()
        return {r["request_id"]: dict(r) for r in rows}


async def wait_for(condition: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_admitted_calls_are_in_flight_until_their_record_commits(
    gateway: Gateway, engine: Engine
) -> None:
    with engine.begin() as conn:
        free = create_key(conn, name="no-budget").secret
    app = gateway.app(**FAST)
    budgeted = gateway.client(app)
    unbudgeted = gateway.client(app)
    unbudgeted.headers["authorization"] = f"Bearer {free}"
    body = {"model": "openai/gpt-4o", "prompt": PROMPT, "max_tokens": 7, "n": 2}
    held = {**body, "sim": {"hold": "g"}}
    async with budgeted, unbudgeted:
        tasks = [
            asyncio.create_task(budgeted.post("/v1/completions", json=held)),
            asyncio.create_task(budgeted.post("/v1/completions", json={**held, "stream": True})),
            asyncio.create_task(unbudgeted.post("/v1/completions", json=held)),
        ]
        await wait_for(lambda: len(gateway.simulator.received) == 3)
        rows = in_flight(engine)
        with engine.connect() as conn:
            reserved = dict(
                conn.execute(select(Reservation.request_id, Reservation.amount_nano)).all()
            )
        assert len(rows) == 3
        assert {r["process_id"] for r in rows.values()} == {app.process.id}
        for row in rows.values():
            assert row["prompt_tokens"] == estimate_tokens(PROMPT)
            assert row["output_tokens"] == 7 * 2
            assert row["requested_model"] == "openai/gpt-4o"
            # what was reserved for it (the budgeted key), nothing for the other
            assert row["reserved_nano"] == reserved.get(row["request_id"])
        assert sum(r["reserved_nano"] is None for r in rows.values()) == 1
        assert sorted(r["stream"] for r in rows.values()) == [False, False, True]
        # the upstream sees the record's id, so its log matches our records
        sent = {r["headers"].get("x-metering-request-id") for r in gateway.simulator.received}
        assert sent == set(rows)
        gateway.simulator.open_gate("g")
        answers = await asyncio.gather(*tasks)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert in_flight(engine) == {}
    assert {r["request_id"] for r in gateway.records()} == set(rows)
    gateway.assert_budgets_consistent()


async def test_startup_sweep_records_a_dead_process_calls(gateway: Gateway, engine: Engine) -> None:
    with engine.begin() as conn:
        dead = register_process(conn, host="gone", pid=1, now=utcnow())
        conn.execute(
            update(ServingProcess)
            .where(ServingProcess.id == dead)
            .values(heartbeat_at=utcnow().replace(year=2000))
        )
        key = conn.execute(select(VirtualKey.__table__).where(VirtualKey.name == "app")).one()
        at = utcnow()
        result = reserve(
            conn,
            request_id="cut",
            key_id=key.id,
            team_id=key.team_id,
            customer_id=key.customer_id,
            amount_nano=30_000_000,
            now=at,
            ttl_seconds=900,
        )
        assert len(result.budget_ids) == 2  # key and team
        call = InFlightCall("cut", dead, key.id, key.team_id, key.customer_id, "openai/gpt-4o",
                            "chat_completion", True, at, 100, 50, 30_000_000)  # fmt: skip
        insert_calls(conn, [call])
    app = gateway.app(**FAST)
    await app.startup()
    (record,) = gateway.records()
    assert (record["request_id"], record["status"], record["total_cost"]) == (
        "cut",
        "interrupted",
        30_000_000,
    )
    assert in_flight(engine) == {}
    gateway.assert_budgets_consistent()  # the reservation is gone, spent = the records


async def test_registers_heartbeats_and_deregisters(gateway: Gateway, engine: Engine) -> None:
    app = gateway.app(**FAST)
    await app.startup()

    def process_row() -> Any:
        with engine.connect() as conn:
            return conn.execute(select(ServingProcess.__table__)).mappings().all()

    (first,) = process_row()
    assert (first["id"], first["pid"]) == (app.process.id, os.getpid())
    await wait_for(lambda: process_row()[0]["heartbeat_at"] > first["heartbeat_at"])
    # declared dead and forgotten (e.g. it stalled past the threshold): it registers anew
    with engine.begin() as conn:
        conn.execute(ServingProcess.__table__.delete())
    await wait_for(lambda: len(process_row()) == 1)
    assert app.process.id != first["id"] and process_row()[0]["id"] == app.process.id
    async with gateway.client(app) as client:
        body = {"model": "openai/gpt-4o", "prompt": "x", "max_tokens": 3}
        answer = await client.post("/v1/completions", json=body)
    assert answer.status_code == 200
    await app.shutdown()
    gateway.apps.remove(app)
    assert process_row() == []  # a clean stop leaves nothing to sweep
    assert in_flight(engine) == {}
