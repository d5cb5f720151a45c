"""Rate limits (429 + Retry-After), ``GET /v1/budget`` and the reservation sweep, in
process (``httpx2.ASGITransport``) with the real aiohttp upstream client and the
simulator on loopback, on SQLite and PostgreSQL. The gateway's clock is frozen so a
minute boundary cannot fall between two requests of a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, func, select

from metering.config import Settings
from metering.core.money import format_usd
from metering.gateway import GatewayApp, create_app
from metering.simulator import Simulator
from metering.storage.budgets import reserve, set_budget
from metering.storage.keys import create_key, utcnow
from metering.storage.models import Budget, RateWindow, Reservation, UsageRecord
from tests.helpers import assert_budgets_consistent

pytestmark = pytest.mark.anyio

NOW = utcnow().replace(second=30, microsecond=0)  # Retry-After from here: 30 s
BODY: dict[str, Any] = {"model": "openai/gpt-4o", "prompt": "rate me", "max_tokens": 10}
DEADLINE_SECONDS = 30  # only guards against a hang; nothing is timed


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    monkeypatch.setattr("metering.gateway.app.utcnow", lambda: NOW)
    return NOW


@pytest.fixture
async def app(engine: Engine, simulator: Simulator) -> AsyncIterator[GatewayApp]:
    settings = Settings(upstream_url=simulator.url)
    made = create_app(settings, engine, budgets=True)
    yield made
    await made.shutdown()


def client(app: GatewayApp, secret: str | None) -> httpx2.AsyncClient:
    headers = {"authorization": f"Bearer {secret}"} if secret else {}
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://proxy", headers=headers
    )


def new_key(engine: Engine, name: str, **limits: Any) -> str:
    with engine.begin() as conn:
        return create_key(conn, name=name, team="ml", customer="acme", **limits).secret


def assert_error(response: httpx2.Response, status: int, error_type: str) -> str:
    body = response.json()
    assert response.status_code == status
    assert (body["type"], body["status_code"], body["is_bifrost_error"]) == (
        error_type,
        status,
        False,
    )
    assert body["error"]["type"] == error_type
    return str(body["error"]["message"])


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


async def test_the_request_after_rpm_gets_429_with_retry_after(
    engine: Engine, app: GatewayApp, frozen_clock: datetime
) -> None:
    secret = new_key(engine, "limited", rpm_limit=3)
    async with client(app, secret) as http:
        passed = [await http.post("/v1/completions", json=BODY) for _ in range(3)]
        assert [r.status_code for r in passed] == [200, 200, 200]
        refused = await http.post("/v1/completions", json=BODY)
    message = assert_error(refused, 429, "rate_limited")
    assert refused.headers["retry-after"] == "30"
    assert "requests-per-minute limit of 3" in message
    assert "retry in 30 s" in message
    assert count(engine, UsageRecord) == 3  # the refused request never went upstream
    other = new_key(engine, "unlimited")
    async with client(app, other) as http:
        assert (await http.post("/v1/completions", json=BODY)).status_code == 200
    assert count(engine, RateWindow) == 1  # keys without limits keep no counters


async def test_concurrent_requests_never_pass_rpm(
    engine: Engine, app: GatewayApp, frozen_clock: datetime
) -> None:
    secret = new_key(engine, "burst", rpm_limit=5)
    async with client(app, secret) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/completions", json=BODY) for _ in range(20))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429] * 15
    assert count(engine, UsageRecord) == 5


async def test_tpm_counts_actual_tokens_and_refuses_what_would_pass_it(
    engine: Engine, app: GatewayApp, frozen_clock: datetime
) -> None:
    secret = new_key(engine, "tokens", tpm_limit=200)
    async with client(app, secret) as http:
        first = await http.post("/v1/completions", json=BODY)
        assert first.status_code == 200
        used = first.json()["usage"]["total_tokens"]
        with engine.connect() as conn:
            counted = conn.execute(select(RateWindow.requests, RateWindow.tokens)).one()
        assert tuple(counted) == (1, used)  # the estimate was replaced by the actual
        too_big = await http.post("/v1/completions", json={**BODY, "max_tokens": 200 - used})
        message = assert_error(too_big, 429, "rate_limited")
        assert too_big.headers["retry-after"] == "30"
        assert "tokens-per-minute limit of 200" in message
        fits = await http.post("/v1/completions", json={**BODY, "prompt": "x", "max_tokens": 1})
        assert fits.status_code == 200
    with engine.connect() as conn:
        tokens = conn.execute(select(RateWindow.tokens)).scalar_one()
        total = conn.execute(select(func.sum(UsageRecord.total_tokens))).scalar_one()
    assert tokens == total


async def test_budget_endpoint_shows_key_team_and_customer_budgets(
    engine: Engine, app: GatewayApp
) -> None:
    secret = new_key(engine, "app", rpm_limit=100)
    now = utcnow()
    with engine.begin() as conn:
        for owner_type, limit in (("key", 5 * 10**9), ("team", 7 * 10**9), ("customer", 10**10)):
            set_budget(
                conn,
                owner_type=owner_type,
                owner_id=1,
                limit_nano=limit,
                period="monthly",
                now=now,
            )
    async with client(app, None) as anonymous:
        missing = await anonymous.get("/v1/budget")
        unknown = await anonymous.get("/v1/budget", headers={"x-bf-vk": "sk-bf-nobody"})
    assert_error(missing, 401, "virtual_key_required")
    assert_error(unknown, 401, "virtual_key_not_found")
    async with client(app, None) as http:
        assert (
            await http.post("/v1/completions", json=BODY, headers={"x-bf-vk": secret})
        ).status_code == 200
        answer = await http.get("/v1/budget", headers={"x-bf-vk": secret})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["key"], body["team"], body["customer"]) == ("app", "ml", "acme")
    assert body["rate_limits"] == {"requests_per_minute": 100, "tokens_per_minute": None}
    with engine.connect() as conn:
        cost = conn.execute(select(UsageRecord.total_cost)).scalar_one()
    assert cost > 0
    budgets = {b["owner_type"]: b for b in body["budgets"]}
    assert [b["owner_type"] for b in body["budgets"]] == ["key", "team", "customer"]
    for owner_type, owner, limit in (
        ("key", "app", 5 * 10**9),
        ("team", "ml", 7 * 10**9),
        ("customer", "acme", 10**10),
    ):
        shown = budgets[owner_type]
        assert shown["owner"] == owner
        assert shown["limit"] == format_usd(limit)
        assert shown["spent"] == format_usd(cost)
        assert shown["reserved"] == format_usd(0)
        assert shown["remaining"] == format_usd(limit - cost)
        assert shown["period"] == "monthly"
        assert shown["next_reset"].endswith("-01T00:00:00Z")
        # The forecast (core.forecast): this month's own rate, or early in the month the
        # recent rate, which for spend of today alone is the spend over one day.
        assert shown["forecast_basis"] in ("period", "recent")
        assert Decimal(shown["forecast"]) >= Decimal(shown["spent"])
        if shown["forecast_basis"] == "recent":
            assert shown["daily_rate"] == format_usd(cost)
    assert_budgets_consistent(engine)


def crash_a_reservation(engine: Engine, request_id: str) -> int:
    """What a process that died mid-request leaves: a reservation, expired by now."""
    started = utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        result = reserve(
            conn,
            request_id=request_id,
            key_id=1,
            team_id=1,
            customer_id=1,
            amount_nano=123_456_789,
            now=started,
            ttl_seconds=60,
        )
    assert result.accepted
    return len(result.budget_ids)


def counters(engine: Engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Budget.spent_nano, Budget.reserved_nano).order_by(Budget.id))
        return [(int(s), int(r)) for s, r in rows]


async def test_sweep_releases_crashed_reservations_at_start_and_periodically(
    engine: Engine, simulator: Simulator
) -> None:
    secret = new_key(engine, "app")
    with engine.begin() as conn:
        for owner_type in ("key", "team"):
            set_budget(
                conn,
                owner_type=owner_type,
                owner_id=1,
                limit_nano=10**10,
                period="never",
                now=utcnow() - timedelta(days=1),
            )
    settings = Settings(upstream_url=simulator.url)
    app = create_app(settings, engine, budgets=True, sweep_seconds=0.05)
    async with client(app, secret) as http:
        assert (await http.post("/v1/completions", json=BODY)).status_code == 200
    spent = [s for s, _ in counters(engine)]
    assert spent[0] > 0
    await app.shutdown()

    assert crash_a_reservation(engine, "crashed-1") == 2
    assert counters(engine) == [(s, 123_456_789) for s in spent]
    await app.startup()  # a restart sweeps before it serves
    try:
        assert counters(engine) == [(s, 0) for s in spent]  # spent unchanged
        assert count(engine, Reservation) == 0
        crash_a_reservation(engine, "crashed-2")  # while the server runs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while count(engine, Reservation) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert count(engine, Reservation) == 0
        assert counters(engine) == [(s, 0) for s in spent]
    finally:
        await app.shutdown()
    assert_budgets_consistent(engine)


async def test_many_concurrent_writers_never_fail_on_either_database(
    engine: Engine, app: GatewayApp
) -> None:
    """Reservations, rate counters, record batches and settlements all write at once
    (on SQLite: no "database is locked" — it would surface as a 503)."""
    secret = new_key(engine, "busy", rpm_limit=10_000, tpm_limit=10_000_000)
    with engine.begin() as conn:
        for owner_type in ("key", "team", "customer"):
            set_budget(
                conn,
                owner_type=owner_type,
                owner_id=1,
                limit_nano=10**12,
                period="daily",
                now=utcnow(),
            )
    async with client(app, secret) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/completions", json=BODY) for _ in range(100))
        )
    assert [r.status_code for r in responses] == [200] * 100
    assert count(engine, UsageRecord) == 100
    assert_budgets_consistent(engine)
