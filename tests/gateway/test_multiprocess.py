"""Several ``metering serve`` processes on one PostgreSQL database enforce one budget:
10×K concurrent requests spread over 3 real servers, for a key whose budget fits
exactly K worst-case requests, with the admitted ones held in flight upstream until
every other one has been answered. And ``metering serve --workers 2`` serves."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx2
import openai
import pytest
from sqlalchemy import Engine, select

from metering.core.budget import reservation_nano, shape_of_request
from metering.simulator import Simulator
from metering.storage.budgets import check_budget_counters, set_budget
from metering.storage.keys import create_key
from metering.storage.models import Budget, UsageRecord
from metering.storage.prices import load_price_book
from tests.process import start_server, stop_server

pytestmark = pytest.mark.slow

K = 4
SERVERS = 3
BODY = {"model": "openai/gpt-4o", "prompt": "share one budget", "max_tokens": 50}
HOLD = {"sim": {"hold": "many"}}
DEADLINE_SECONDS = 60  # only guards against a hang; nothing is timed


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture
def servers(db_url: str, simulator: Simulator) -> Iterator[list[str]]:
    started: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for _ in range(SERVERS):
            url, process = start_server(db_url, simulator.url)
            started.append(process)
            urls.append(url)
        yield urls
    finally:
        for process in started:
            stop_server(process)


async def _send(urls: list[str], secret: str, simulator: Simulator) -> list[int | str]:
    clients = [
        openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) for url in urls
    ]

    async def one(i: int) -> int | str:
        try:
            await clients[i % len(clients)].completions.create(
                model=BODY["model"],  # type: ignore[arg-type]
                prompt=BODY["prompt"],  # type: ignore[arg-type]
                max_tokens=BODY["max_tokens"],  # type: ignore[arg-type]
                extra_body=HOLD,
            )
        except openai.APIStatusError as exc:
            body = exc.response.json()
            assert (body["status_code"], body["is_bifrost_error"]) == (exc.status_code, False)
            assert body["error"]["type"] == body["type"]
            assert body["error"]["message"]
            return f"{exc.status_code} {body['type']}"
        return 200

    try:
        tasks = [asyncio.create_task(one(i)) for i in range(10 * K)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while sum(t.done() for t in tasks) < 10 * K - K and loop.time() < deadline:
            await asyncio.sleep(0.02)
        simulator.open_gate("many")
        return list(await asyncio.gather(*tasks))
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_three_servers_on_one_postgres_never_overspend(
    engine: Engine, servers: list[str], simulator: Simulator
) -> None:
    with engine.begin() as conn:
        created = create_key(conn, name="shared", team="ml", customer="acme")
        version = load_price_book(conn).lookup("openai", "gpt-4o", _now().date())
        assert version is not None
        worst = reservation_nano(shape_of_request({**BODY, **HOLD}), version)
        limit = K * worst + worst // 2
        set_budget(
            conn,
            owner_type="key",
            owner_id=created.info.id,
            limit_nano=limit,
            period="monthly",
            now=_now(),
        )
    outcomes = asyncio.run(_send(servers, created.secret, simulator))
    assert outcomes.count(200) == K
    assert outcomes.count("402 budget_exceeded") == 10 * K - K
    assert len(simulator.received) == K  # refused requests never went upstream
    with engine.connect() as conn:
        costs = list(conn.execute(select(UsageRecord.total_cost)).scalars())
        spent, reserved = conn.execute(select(Budget.spent_nano, Budget.reserved_nano)).one()
        problems = check_budget_counters(conn, now=_now())
    assert len(costs) == K
    assert spent == sum(costs) <= limit
    assert reserved == 0
    assert problems == []


def test_serve_with_two_workers_serves(db_url: str, engine: Engine, simulator: Simulator) -> None:
    with engine.begin() as conn:
        secret = create_key(conn, name="app", rpm_limit=1000).secret
    url, process = start_server(db_url, simulator.url, extra_args=("--workers", "2"))
    try:
        headers = {"authorization": f"Bearer {secret}"}
        for _ in range(6):
            answer = httpx2.post(url + "/v1/completions", json=BODY, headers=headers, timeout=30)
            assert answer.status_code == 200
        budget = httpx2.get(url + "/v1/budget", headers=headers, timeout=30)
        assert budget.status_code == 200 and budget.json()["key"] == "app"
    finally:
        stop_server(process)
    with engine.connect() as conn:
        assert len(list(conn.execute(select(UsageRecord.id)).scalars())) == 6
