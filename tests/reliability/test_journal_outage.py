"""The database fails while calls are at the upstream: every call the upstream answered
is answered to its client (never a 5xx), its record is journaled, and replayed exactly
once when the database is back — records equal the upstream's count, budgets equal the
records. New calls meanwhile fail closed (503, nothing upstream). The calls rotate over
completions, the Responses API and Anthropic Messages, whole and streamed.

SQLite: the database refuses writes mid-traffic (``PRAGMA query_only``) under the
gateway in process. PostgreSQL: a throwaway cluster the test owns is stopped for ~5 s
under a real ``metering serve``."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from metering.simulator import Simulator
from metering.storage.database import open_database
from metering.storage.models import UsageRecord
from tests.helpers import ReadOnlySwitch
from tests.process import start_server, stop_server
from tests.reliability.conftest import Gateway, new_gateway
from tests.reliability.pg_cluster import Cluster, server_binaries

pytestmark = pytest.mark.anyio

CLIENTS = 8
REPLAY_DEADLINE_SECONDS = 60


@dataclass
class Outcome:
    answered: list[str] = field(default_factory=list)  # request ids with a whole answer
    refused: list[int] = field(default_factory=list)  # statuses of refused calls
    broken: list[str] = field(default_factory=list)  # anything else: a failure


# Calls rotate over the API shapes (path, body, how its stream ends): the journal is the
# same for every route.
SHAPES = (
    ("/v1/completions", {"model": "openai/gpt-4o", "max_tokens": 16}, "prompt", "data: [DONE]"),
    ("/v1/responses", {"model": "openai/gpt-4o", "max_output_tokens": 16}, "input",
     '"type":"response.completed"'),
    ("/anthropic/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 16}, "messages",
     '"type":"message_stop"'),
)  # fmt: skip


async def one_call(client: httpx2.AsyncClient, n: int, outcome: Outcome) -> None:
    stream = n % 2 == 1
    path, base, field, end = SHAPES[(n // 2) % len(SHAPES)]
    prompt = [{"role": "user", "content": f"call {n}"}] if field == "messages" else f"call {n}"
    body = {**base, field: prompt, "stream": stream, "sim": {"delay": 0.25}}
    try:
        async with client.stream("POST", path, json=body) as response:
            text = (await response.aread()).decode()
    except httpx2.TransportError as exc:
        outcome.broken.append(f"transport error {exc!r}")
        return
    if response.status_code == 200:
        last = text.strip().split("\n\n")[-1].replace(" ", "")
        if stream and end.replace(" ", "") not in last:
            outcome.broken.append(f"{path} stream without its last event: {text[-300:]}")
        else:
            outcome.answered.append(response.headers["x-metering-request-id"])
    elif response.status_code == 503 and "metering_unavailable" in text:  # both error shapes
        outcome.refused.append(response.status_code)
    else:
        outcome.broken.append(f"{response.status_code}: {text[:300]}")


async def load(client: httpx2.AsyncClient, outage: Callable[[], Awaitable[None]]) -> Outcome:
    """CLIENTS callers in a loop around ``outage()``, then a little longer."""
    outcome = Outcome()
    done = asyncio.Event()
    counter = iter(range(10**6))

    async def caller() -> None:
        while not done.is_set():
            await one_call(client, next(counter), outcome)

    callers = [asyncio.create_task(caller()) for _ in range(CLIENTS)]
    await asyncio.sleep(1.0)
    await outage()
    await asyncio.sleep(1.5)
    done.set()
    await asyncio.gather(*callers)
    return outcome


def wait_for_records(gateway: Gateway, expected: int) -> int:
    deadline = time.monotonic() + REPLAY_DEADLINE_SECONDS
    while True:
        with gateway.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(UsageRecord)).scalar_one()
        if count >= expected or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.2)


def check(gateway: Gateway, outcome: Outcome) -> None:
    assert outcome.broken == []
    sent = len(gateway.simulator.received)
    assert len(outcome.answered) == sent  # every call the upstream answered got its answer
    assert outcome.refused, "no call met the outage: the test did not test it"
    assert wait_for_records(gateway, sent) == sent
    records = gateway.records()
    assert sorted(r["request_id"] for r in records) == sorted(outcome.answered)
    gateway.assert_budgets_consistent()


async def test_sqlite_refusing_writes_mid_traffic_loses_nothing(gateway: Gateway) -> None:
    switch = ReadOnlySwitch(gateway.engine)
    app = gateway.app()

    async def outage() -> None:
        switch.on = True
        await asyncio.sleep(1.5)
        switch.on = False

    async with gateway.client(app) as client:
        outcome = await load(client, outage)
    assert app.writer.journaled > 0  # calls at the upstream when writes stopped
    check(gateway, outcome)
    assert app.writer.journal is not None and app.writer.journal.pending == 0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if server_binaries() is None:
        reason = "no PostgreSQL server binaries to start a throwaway cluster"
        if os.environ.get("METERING_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    made = Cluster(Path(tempfile.mkdtemp(prefix="metering-pg-")))
    try:
        made.start()
        yield made
    finally:
        made.destroy()


async def test_postgresql_stopped_for_five_seconds_loses_nothing(
    cluster: Cluster, simulator: Simulator, tmp_path: Path
) -> None:
    engine = open_database(cluster.url)
    gateway = new_gateway(engine, simulator)
    url, process = start_server(cluster.url, simulator.url, log_path=tmp_path / "serve.log")

    async def outage() -> None:
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(5)
        await asyncio.to_thread(cluster.start)

    try:
        headers = {"authorization": f"Bearer {gateway.secret}"}
        async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            outcome = await load(client, outage)
            check(gateway, outcome)
            health = (await client.get("/health")).json()
        assert health["journal"]["journaled"] > 0 and health["journal"]["pending"] == 0
    finally:
        stop_server(process)
        engine.dispose()
