"""Interrupted calls: ``metering serve`` killed with SIGKILL again and again, at random
points under concurrent load (before the upstream call, while calls wait at a slow
upstream, mid-stream, during a record's commit), restarted on the same database after
each kill; and a process killed for good beside another that keeps running.

What must hold (SPEC §5, §7, §8): every call the upstream received has exactly one
record within ``RECORDED_WITHIN_SECONDS`` of the restart — its own, or an
``interrupted`` one billed from an estimate; a record for a call the upstream never
received (killed between admission and sending) is ``interrupted``; a complete response
has its ``success`` record; no request id is recorded twice; nothing stays reserved or
in flight; budget counters and rollups equal the records (``metering reconcile``).

Short liveness settings (heartbeat 0.2 s, dead after 1 s, sweep every 0.2 s) keep each
round quick; with the defaults the same holds within 30 + 10 s. Each replacement server's
interpreter is started two kills ahead (``spawn_warm_server``: Python's start and imports
out of the loop's way); the restart then runs all of ``metering serve``'s own startup.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, func, select

from metering.gateway.upstream import REQUEST_ID_HEADER
from metering.simulator import Simulator
from metering.storage.budgets import check_budget_counters, set_budget
from metering.storage.keys import create_key, utcnow
from metering.storage.models import CallInFlight, Reservation, UsageRecord
from tests.process import WarmServer, kill_server, spawn_warm_server, start_server, stop_server

pytestmark = pytest.mark.slow

KILLS = 50
WARM_AHEAD = 2  # replacement servers whose interpreters are already starting
WORKERS = 12
KILL_AFTER_SECONDS = (0.05, 0.5)  # uniform: how long each burst runs before the kill
RECORDED_WITHIN_SECONDS = 60
LIVENESS = {
    "METERING_HEARTBEAT_SECONDS": "0.2",
    "METERING_STALE_AFTER_SECONDS": "1",
    "METERING_SWEEP_SECONDS": "0.2",
}


@dataclass
class Outcome:
    kind: str
    request_id: str | None  # x-metering-request-id, if the headers arrived
    response_id: str | None
    complete: bool


def body_for(kind: str, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "openai/gpt-4o", "prompt": f"{kind} call", "max_tokens": 8}
    if kind == "slow":  # still at the upstream when the kill comes
        body["sim"] = {"delay": round(rng.uniform(0.2, 1.5), 3)}
    elif kind == "stream":  # killed mid-stream, between chunks
        stall = round(rng.uniform(0.05, 0.4), 3)
        body.update(stream=True, sim={"chunks": 4, "stall_after": 1, "stall": stall})
    elif kind == "fast-stream":
        body["stream"] = True
    return body


KINDS = ("fast", "fast", "fast-stream", "slow", "stream")  # fast ones: many commits


async def one_request(
    client: httpx2.AsyncClient, secret: str, kind: str, rng: random.Random
) -> Outcome:
    body = body_for(kind, rng)
    request_id = None
    headers = {"authorization": f"Bearer {secret}"}
    try:
        async with client.stream("POST", "/v1/completions", json=body, headers=headers) as response:
            request_id = response.headers.get("x-metering-request-id")
            raw = (await response.aread()).decode()
    except httpx2.TransportError:
        return Outcome(kind, request_id, None, complete=False)
    if response.status_code != 200:
        return Outcome(kind, request_id, None, complete=False)
    if body.get("stream"):
        events = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return Outcome(kind, request_id, None, complete=False)
        first = httpx2.Response(200, content=events[0]).json()["id"]
        return Outcome(kind, request_id, first, complete=True)
    answer = httpx2.Response(200, content=raw).json()["id"]
    return Outcome(kind, request_id, answer, complete=True)


async def burst_then_kill(
    url: str, secrets: list[str], process: subprocess.Popen[bytes], rng: random.Random
) -> list[Outcome]:
    """Concurrent clients until a SIGKILL at a random moment; what each request saw."""
    outcomes: list[Outcome] = []
    killed = asyncio.Event()

    async def worker(client: httpx2.AsyncClient, secret: str, seed: int) -> None:
        mine = random.Random(seed)
        while not killed.is_set():
            outcomes.append(await one_request(client, secret, mine.choice(KINDS), mine))

    limits = httpx2.Limits(max_connections=WORKERS)
    async with httpx2.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        tasks = [
            asyncio.create_task(worker(client, secrets[i % 2], rng.randrange(2**32)))
            for i in range(WORKERS)
        ]
        await asyncio.sleep(rng.uniform(*KILL_AFTER_SECONDS))
        killed.set()
        kill_server(process)  # SIGKILL while the workers are mid-request
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return outcomes


def received_ids(simulator: Simulator) -> list[str]:
    return [r["headers"][REQUEST_ID_HEADER] for r in list(simulator.received)]


def wait_until_recorded(engine: Engine, wanted: set[str], *, since: float) -> set[str]:
    """Poll until every request id in ``wanted`` has a record; the ids recorded. Fails
    after ``RECORDED_WITHIN_SECONDS`` from ``since`` (monotonic)."""
    while True:
        with engine.connect() as conn:
            recorded = set(conn.execute(select(UsageRecord.request_id)).scalars())
        missing = wanted - recorded
        if not missing:
            return recorded
        assert time.monotonic() - since < RECORDED_WITHIN_SECONDS, (
            f"{len(missing)} call(s) the upstream received still have no record "
            f"{RECORDED_WITHIN_SECONDS}s after the restart: {sorted(missing)[:5]}"
        )
        time.sleep(0.05)


def reconcile(db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METERING_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "metering", "reconcile", "--limit", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_keys(engine: Engine) -> list[str]:
    """A key under key and team budgets, and one with none."""
    with engine.begin() as conn:
        budgeted = create_key(conn, name="app", team="ml", customer="acme")
        for owner_type, owner_id in (("key", budgeted.info.id), ("team", budgeted.info.team_id)):
            assert owner_id is not None
            set_budget(
                conn,
                owner_type=owner_type,
                owner_id=owner_id,
                limit_nano=1000 * 10**9,
                period="monthly",
                now=utcnow(),
            )
        free = create_key(conn, name="free")
    return [budgeted.secret, free.secret]


def assert_ledger_complete(
    engine: Engine, db_url: str, simulator: Simulator, outcomes: list[Outcome]
) -> dict[str, Any]:
    """The checks of the module doc once every server is stopped; what was measured."""
    received = received_ids(simulator)
    assert len(set(received)) == len(received)  # each call went upstream once
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                UsageRecord.request_id,
                UsageRecord.response_id,
                UsageRecord.status,
                UsageRecord.stream,
                UsageRecord.cost_source,
                UsageRecord.total_cost,
                UsageRecord.usage_estimated,
            )
        ).all()
        held = conn.execute(select(func.count()).select_from(Reservation)).scalar_one()
        flying = conn.execute(select(func.count()).select_from(CallInFlight)).scalar_one()
        problems = check_budget_counters(conn, now=utcnow())
    by_request = {r.request_id: r for r in rows}
    assert len(by_request) == len(rows), "a request id is recorded twice"
    response_ids = [r.response_id for r in rows if r.response_id is not None]
    assert len(set(response_ids)) == len(response_ids), "a response is recorded twice"
    missing = set(received) - set(by_request)
    assert not missing, f"calls the upstream received without a record: {sorted(missing)[:5]}"
    never_sent = [r for r in rows if r.request_id not in set(received)]
    assert all(r.status == "interrupted" for r in never_sent)
    for outcome in outcomes:
        if outcome.complete:
            record = by_request[outcome.request_id]  # type: ignore[index]
            assert (record.status, record.response_id) == ("success", outcome.response_id)
    interrupted = [r for r in rows if r.status == "interrupted"]
    for record in interrupted:
        assert record.usage_estimated and record.cost_source == "estimated"
        assert record.total_cost > 0  # never silently $0
    assert (held, flying) == (0, 0)
    assert problems == [], "\n".join(problems)
    result = reconcile(db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"interrupted calls: {len(interrupted)} (" in result.stdout
    sent_complete = {o.request_id for o in outcomes if o.complete}
    return {
        "requests": len(outcomes),
        "upstream_received": len(received),
        "records": len(rows),
        "interrupted": len(interrupted),
        "interrupted_streams": sum(bool(r.stream) for r in interrupted),
        "interrupted_never_sent": len(never_sent),
        "committed_not_delivered": sum(
            r.status != "interrupted" and r.request_id not in sent_complete for r in rows
        ),
    }


def test_sigkill_loop_every_upstream_call_has_one_record(
    db_url: str, engine: Engine, simulator: Simulator, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    secrets = make_keys(engine)
    log = tmp_path / "serve.log"
    outcomes: list[Outcome] = []
    per_kill: list[int] = []
    recorded_after: list[float] = []
    restarts: list[float] = []
    bursts: list[float] = []
    started = time.monotonic()
    url, process = start_server(db_url, simulator.url, log_path=log, **LIVENESS)
    # replacement interpreters, started (and importing) two kills ahead
    warm: deque[WarmServer] = deque()
    try:
        for kill in range(KILLS):
            while len(warm) < min(WARM_AHEAD, KILLS - kill):
                warm.append(spawn_warm_server(db_url, simulator.url, log_path=log, **LIVENESS))
            before = len(received_ids(simulator))
            burst_started = time.monotonic()
            outcomes += asyncio.run(burst_then_kill(url, secrets, process, rng))
            bursts.append(time.monotonic() - burst_started)
            assert process.returncode == -9
            killed = time.monotonic()
            url, process = warm.popleft().serve()  # the restart: serve's whole startup
            restarted = time.monotonic()
            restarts.append(restarted - killed)
            wait_until_recorded(engine, set(received_ids(simulator)), since=restarted)
            recorded_after.append(time.monotonic() - restarted)
            per_kill.append(len(received_ids(simulator)) - before)
        # the last server meters new traffic, then stops cleanly
        with httpx2.Client(
            base_url=url, headers={"authorization": f"Bearer {secrets[0]}"}, timeout=30
        ) as client:
            after = client.post("/v1/completions", json=body_for("fast", rng))
        assert after.status_code == 200
    finally:
        stop_server(process)
        for unused in warm:
            stop_server(unused.process)
    measured = assert_ledger_complete(engine, db_url, simulator, outcomes)
    kinds = Counter(o.kind for o in outcomes if not o.complete)
    measured |= {
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "cut_by_kind": dict(kinds),
        "restart_mean_s": round(sum(restarts) / len(restarts), 2),
        "burst_mean_s": round(sum(bursts) / len(bursts), 2),
        "recorded_after_restart_mean_s": round(sum(recorded_after) / len(recorded_after), 2),
        "recorded_after_restart_max_s": round(max(recorded_after), 2),
        "upstream_calls_per_kill_min": min(per_kill),
    }
    print(f"\nsigkill loop ({db_url.partition(':')[0]}): {measured}")
    assert measured["interrupted"] >= KILLS // 2, measured  # the kills landed mid-call
    assert measured["interrupted_streams"] > 0, measured


def test_calls_of_a_process_that_never_comes_back_are_recorded_by_another(
    db_url: str, engine: Engine, simulator: Simulator, tmp_path: Path
) -> None:
    """Two servers on one database; one is killed with calls at a slow upstream and never
    restarted: the other records them (within the threshold + a sweep) and keeps serving."""
    secrets = make_keys(engine)
    log = tmp_path / "serve.log"
    url_a, process_a = start_server(db_url, simulator.url, log_path=log, **LIVENESS)
    url_b, process_b = start_server(db_url, simulator.url, log_path=log, **LIVENESS)
    try:

        async def load() -> None:
            async with httpx2.AsyncClient(
                base_url=url_a, headers={"authorization": f"Bearer {secrets[0]}"}, timeout=30
            ) as client:
                slow = {"model": "openai/gpt-4o", "prompt": "slow", "max_tokens": 8,
                        "sim": {"delay": 5}}  # fmt: skip
                tasks = [asyncio.create_task(client.post("/v1/completions", json=slow))
                         for _ in range(8)]  # fmt: skip
                while len(simulator.received) < 8:
                    await asyncio.sleep(0.02)
                kill_server(process_a)
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(load())
        killed = time.monotonic()
        recorded = wait_until_recorded(engine, set(received_ids(simulator)), since=killed)
        assert len(recorded) == 8
        with httpx2.Client(
            base_url=url_b, headers={"authorization": f"Bearer {secrets[0]}"}, timeout=30
        ) as client:
            after = client.post("/v1/completions", json=body_for("fast", random.Random(1)))
        assert after.status_code == 200
    finally:
        kill_server(process_a)
        stop_server(process_b)
    with engine.connect() as conn:
        statuses = Counter(conn.execute(select(UsageRecord.status)).scalars())
    assert statuses == {"interrupted": 8, "success": 1}
    assert_ledger_complete(engine, db_url, simulator, [])
