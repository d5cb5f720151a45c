"""Budgets through the real `metering serve` process: 402 before the upstream is called,
never overspend under concurrency, team budgets, unpriced models; and the gate's worst
case over fallbacks."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import httpx2
import openai
import pytest
from sqlalchemy import Engine, select

from metering.core.budget import reservation_nano, shape_of_request
from metering.core.pricing import PriceBook
from metering.errors import RequestRefused
from metering.gateway.admission import RequestInfo
from metering.gateway.budget_gate import BudgetGate
from metering.gateway.shapes import SHAPES
from metering.storage.budgets import set_budget
from metering.storage.models import Budget
from metering.storage.owners import find_owner
from metering.storage.prices import load_price_book
from tests.gateway.conftest import Served
from tests.helpers import assert_budgets_consistent

pytestmark = pytest.mark.slow

BODY: dict[str, Any] = {"model": "openai/gpt-4o", "prompt": "count the budget", "max_tokens": 50}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def worst_case(engine: Engine, body: dict[str, Any]) -> int:
    with engine.connect() as conn:
        version = load_price_book(conn).lookup("openai", "gpt-4o", _now().date())
    assert version is not None
    return reservation_nano(shape_of_request(body), version)


def budget(engine: Engine, owner_type: str, name: str, limit_nano: int) -> None:
    with engine.begin() as conn:
        owner_id, _ = find_owner(conn, owner_type, name)
        set_budget(
            conn,
            owner_type=owner_type,
            owner_id=owner_id,
            limit_nano=limit_nano,
            period="monthly",
            now=_now(),
        )


HELD = {**BODY, "sim": {"hold": "budget"}}  # the simulator keeps these until the gate opens
DEADLINE_SECONDS = 60  # only guards against a hang; nothing is timed


async def _send_held(served: Served, count: int, admitted: int) -> list[int | str]:
    """Send ``count`` requests at once; the admitted ones stay in flight (held upstream)
    until the others have been answered, so every reservation is live at the same time.
    Each outcome: 200, or "status error-type"."""
    client = served.async_client()
    try:

        async def one() -> int | str:
            try:
                await client.completions.create(
                    model=BODY["model"],
                    prompt=BODY["prompt"],
                    max_tokens=BODY["max_tokens"],
                    extra_body={"sim": HELD["sim"]},
                )
            except openai.APIStatusError as exc:
                body = exc.response.json()
                assert body["status_code"] == exc.status_code
                assert body["is_bifrost_error"] is False
                return f"{exc.status_code} {body['error']['type']}"
            return 200

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while sum(t.done() for t in tasks) < count - admitted and loop.time() < deadline:
            await asyncio.sleep(0.02)
        served.simulator.open_gate("budget")
        return list(await asyncio.gather(*tasks))
    finally:
        await client.close()


def test_at_most_k_of_10k_concurrent_requests_pass(served: Served) -> None:
    k = 4
    worst = worst_case(served.engine, HELD)
    budget(served.engine, "key", "app", k * worst + worst // 2)
    outcomes = asyncio.run(_send_held(served, 10 * k, k))
    passed = outcomes.count(200)
    assert passed == k
    assert outcomes.count("402 budget_exceeded") == 10 * k - k
    records = served.records()
    assert len(records) == passed  # refused requests never reached the upstream
    assert len(served.simulator.received) == passed
    with served.engine.connect() as conn:
        limit, spent, reserved = conn.execute(
            select(Budget.limit_nano, Budget.spent_nano, Budget.reserved_nano)
        ).one()
    assert spent == sum(r["total_cost"] for r in records) <= limit
    assert reserved == 0
    assert_budgets_consistent(served.engine)


def test_team_budget_refusal_names_the_team(served: Served) -> None:
    budget(served.engine, "key", "app", 10**12)
    budget(served.engine, "team", "ml", worst_case(served.engine, BODY) - 1)
    client = served.client()
    with pytest.raises(openai.APIStatusError) as refused:
        client.completions.create(**BODY)
    assert refused.value.status_code == 402
    error = refused.value.response.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert "team budget of team 'ml' would be exceeded" in error["message"]
    assert "resets at" in error["message"]
    assert served.simulator.received == []
    assert_budgets_consistent(served.engine)


def test_unpriced_model_is_refused_only_for_a_key_with_a_budget(served: Served) -> None:
    unpriced = {"model": "mistral/unknown-model", "prompt": "hi", "max_tokens": 5}
    headers = {"Authorization": f"Bearer {served.secret}"}
    ok = httpx2.post(served.url + "/v1/completions", json=unpriced, headers=headers, timeout=30)
    assert ok.status_code == 200
    budget(served.engine, "customer", "acme", 10**12)
    refused = httpx2.post(
        served.url + "/v1/completions", json=unpriced, headers=headers, timeout=30
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "model_unpriced"
    assert_budgets_consistent(served.engine)


def test_worst_case_covers_the_dearest_fallback(engine: Engine) -> None:
    with engine.connect() as conn:
        book: PriceBook = load_price_book(conn)
    gate = BudgetGate(engine, ttl_seconds=60)
    body = {"model": "openai/gpt-4o-mini", "prompt": "x", "max_tokens": 10_000}

    def info(data: dict[str, Any]) -> RequestInfo:
        return RequestInfo(
            request_id="r",
            started_at=datetime(2026, 1, 1),
            requested_model=data["model"],
            shape=SHAPES["text_completion"],
            fallbacks=tuple(data.get("fallbacks", ())),
            stream=False,
            body=data,
            body_bytes=0,
            prices=book,
        )

    alone = gate.worst_case_nano(info(body))
    both = {**body, "fallbacks": ["openai/o1"]}
    with_fallback = gate.worst_case_nano(info(both))
    mini = book.lookup("openai", "gpt-4o-mini", date(2026, 1, 1))
    o1 = book.lookup("openai", "o1", date(2026, 1, 1))
    assert mini is not None and o1 is not None
    shape = shape_of_request(both)
    assert with_fallback == reservation_nano(shape, o1) > reservation_nano(shape, mini)
    assert with_fallback > alone
    with pytest.raises(RequestRefused) as unpriced:
        gate.worst_case_nano(info({**body, "fallbacks": ["nobody/nothing"]}))
    assert (unpriced.value.status, unpriced.value.error_type) == (403, "model_unpriced")
    with pytest.raises(RequestRefused) as bad:
        gate.worst_case_nano(info({**body, "max_tokens": -1}))
    assert bad.value.status == 400
