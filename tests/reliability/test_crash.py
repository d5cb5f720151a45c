"""Crash safety: ``metering serve`` killed with SIGKILL in the middle of concurrent
load (streamed and whole requests, budgets enforced), restarted on the same database.

What must hold (SPEC §8, §7): every request whose client got a complete response
(a whole JSON answer, or a stream through ``data: [DONE]``) has exactly one record,
matched by the ``x-metering-request-id`` header and the response id; no record is
duplicated; the only reservations left are those of requests cut by the crash, and
the expiry sweep gives them all back; budget counters and rollups equal the records
(``metering reconcile`` exits 0); the restarted server meters new traffic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Engine, func, select

from metering.gateway.budget_gate import EXPIRY_MARGIN_SECONDS
from metering.simulator import Simulator
from metering.storage.budgets import check_budget_counters, release_expired, set_budget
from metering.storage.keys import create_key, utcnow
from metering.storage.models import Reservation, UsageRecord
from tests.process import kill_server, start_server, stop_server

pytestmark = pytest.mark.slow

WORKERS = 24
KILL_AFTER_COMPLETED = 60
UPSTREAM_TIMEOUT = 10  # seconds; reservations expire after this + EXPIRY_MARGIN_SECONDS
LOAD_DEADLINE_SECONDS = 60


@dataclass
class Outcome:
    request_id: str | None  # x-metering-request-id, if the headers arrived
    response_id: str | None
    complete: bool


def body_for(i: int) -> dict[str, object]:
    body: dict[str, object] = {"model": "openai/gpt-4o", "prompt": f"request {i}", "max_tokens": 8}
    if i % 2:
        body.update(stream=True, sim={"chunks": 4, "stall_after": 2, "stall": 0.05})
    else:
        body["sim"] = {"delay": 0.05}
    return body


async def one_request(client: httpx2.AsyncClient, i: int) -> Outcome:
    body = body_for(i)
    request_id = response_id = None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            request_id = response.headers.get("x-metering-request-id")
            raw = (await response.aread()).decode()
    except httpx2.TransportError:
        return Outcome(request_id, None, complete=False)
    if response.status_code != 200:
        return Outcome(request_id, None, complete=False)
    if body.get("stream"):
        events = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
        complete = bool(events) and events[-1] == "[DONE]"
        if complete:
            response_id = httpx2.Response(200, content=events[0]).json()["id"]
        return Outcome(request_id, response_id, complete)
    return Outcome(request_id, httpx2.Response(200, content=raw).json()["id"], complete=True)


async def load_then_kill(url: str, secret: str, process: subprocess.Popen[bytes]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    counter = iter(range(10**9))
    killed = asyncio.Event()

    async def worker(client: httpx2.AsyncClient) -> None:
        while not killed.is_set():
            outcome = await one_request(client, next(counter))
            outcomes.append(outcome)
            if sum(o.complete for o in outcomes) >= KILL_AFTER_COMPLETED and not killed.is_set():
                killed.set()
                kill_server(process)  # SIGKILL while the other workers are mid-request

    async with httpx2.AsyncClient(
        base_url=url, headers={"authorization": f"Bearer {secret}"}, timeout=30
    ) as client:
        await asyncio.wait_for(
            asyncio.gather(*(worker(client) for _ in range(WORKERS))), LOAD_DEADLINE_SECONDS
        )
    return outcomes


def reconcile(db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METERING_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "metering", "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sigkill_mid_load_loses_and_duplicates_nothing(
    db_url: str, engine: Engine, simulator: Simulator, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        created = create_key(conn, name="app", team="ml", customer="acme")
        for owner_type, owner_id in (("key", created.info.id), ("team", created.info.team_id)):
            assert owner_id is not None
            set_budget(
                conn,
                owner_type=owner_type,
                owner_id=owner_id,
                limit_nano=1000 * 10**9,
                period="monthly",
                now=utcnow(),
            )
    env = {"METERING_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT)}
    log = tmp_path / "serve.log"
    url, process = start_server(db_url, simulator.url, log_path=log, **env)
    try:
        outcomes = asyncio.run(load_then_kill(url, created.secret, process))
    finally:
        kill_server(process)
    assert process.returncode == -9

    completed = [o for o in outcomes if o.complete]
    cut = [o for o in outcomes if not o.complete]
    assert len(completed) >= KILL_AFTER_COMPLETED
    assert cut, "the kill must land while requests are in flight"
    assert all(o.request_id is not None for o in completed)

    with engine.connect() as conn:
        rows = conn.execute(
            select(UsageRecord.request_id, UsageRecord.response_id, UsageRecord.status)
        ).all()
        held = set(conn.execute(select(Reservation.request_id)).scalars())
    by_request = {r.request_id: r for r in rows}
    assert len(by_request) == len(rows)  # no request recorded twice
    response_ids = [r.response_id for r in rows if r.response_id is not None]
    assert len(set(response_ids)) == len(response_ids)
    for outcome in completed:
        record = by_request[outcome.request_id]  # type: ignore[index]
        assert (record.response_id, record.status) == (outcome.response_id, "success")
    # Only requests the crash cut short may still hold budget; none of them has a record.
    assert not held & set(by_request)
    assert not held & {o.request_id for o in completed}
    assert len(rows) <= len(simulator.received)

    # Restart on the same database: it serves and meters again.
    url, process = start_server(db_url, simulator.url, log_path=log, **env)
    try:
        with httpx2.Client(
            base_url=url, headers={"authorization": f"Bearer {created.secret}"}, timeout=30
        ) as client:
            after = [client.post("/v1/completions", json=body_for(i)) for i in range(4)]
    finally:
        stop_server(process)
    assert [r.status_code for r in after] == [200] * 4
    with engine.connect() as conn:
        recorded = set(conn.execute(select(UsageRecord.request_id)).scalars())
    assert {r.headers["x-metering-request-id"] for r in after} <= recorded

    # After the reservations' expiry, the sweep gives back everything still held.
    expired = utcnow() + timedelta(seconds=UPSTREAM_TIMEOUT + EXPIRY_MARGIN_SECONDS + 1)
    with engine.begin() as conn:
        release_expired(conn, now=expired)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Reservation)).scalar_one() == 0
        assert check_budget_counters(conn, now=utcnow()) == []
    result = reconcile(db_url)
    assert result.returncode == 0, result.stdout + result.stderr
