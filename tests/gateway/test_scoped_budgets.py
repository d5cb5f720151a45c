"""End-user and tag budgets through the real `metering serve` process (SQLite and
PostgreSQL): 10×K concurrent requests of one end user whose budget fits K → at most K
pass; other end users of the same customer are unaffected; the default end-user budget
is created on first use, once, and holds; a tag budget refuses the requests carrying
its tag. Refused requests never reach the upstream; counters = records after each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, select

from metering.core.budget import reservation_nano, shape_of_request
from metering.storage.budgets import set_budget
from metering.storage.models import Budget
from metering.storage.owners import find_owner
from metering.storage.prices import load_price_book
from tests.gateway.conftest import Served
from tests.helpers import assert_budgets_consistent

pytestmark = pytest.mark.slow

BODY: dict[str, Any] = {"model": "openai/gpt-4o", "prompt": "count the budget", "max_tokens": 50}
HELD = {**BODY, "sim": {"hold": "budget"}}  # the simulator keeps these until the gate opens
DEADLINE_SECONDS = 60  # only guards against a hang; nothing is timed


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def worst_case(engine: Engine, body: dict[str, Any]) -> int:
    with engine.connect() as conn:
        version = load_price_book(conn).lookup("openai", "gpt-4o", _now().date())
    assert version is not None
    return reservation_nano(shape_of_request(body), version)


def acme_scope(engine: Engine) -> str:
    with engine.connect() as conn:
        return f"customer:{find_owner(conn, 'customer', 'acme')[0]}"


def scoped_budget(engine: Engine, kind: str, limit_nano: int, **identity: str) -> int:
    with engine.begin() as conn:
        status = set_budget(conn, owner_type=kind, owner_id=0, limit_nano=limit_nano,
                            period="monthly", now=_now(), **identity)  # fmt: skip
    return status.budget_id


def post(served: Served, body: dict[str, Any], tags: str | None = None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {served.secret}"}
    if tags is not None:
        headers["x-metering-tags"] = tags
    return httpx2.post(served.url + "/v1/completions", json=body, headers=headers, timeout=30)


async def _send_held(served: Served, count: int, admitted: int, user: str) -> list[int | str]:
    """``count`` requests of end user ``user`` at once; the admitted ones are held upstream
    until the others have been answered, so every reservation is live at the same time."""
    headers = {"Authorization": f"Bearer {served.secret}"}
    async with httpx2.AsyncClient(base_url=served.url, headers=headers, timeout=60) as client:

        async def one() -> int | str:
            response = await client.post("/v1/completions", json={**HELD, "user": user})
            if response.status_code == 200:
                return 200
            return f"{response.status_code} {response.json()['error']['type']}"

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while sum(t.done() for t in tasks) < count - admitted and loop.time() < deadline:
            await asyncio.sleep(0.02)
        served.simulator.open_gate("budget")
        return list(await asyncio.gather(*tasks))


def test_default_end_user_budget_at_most_k_of_10k_and_others_unaffected(served: Served) -> None:
    k = 4
    worst = worst_case(served.engine, HELD)
    scope = acme_scope(served.engine)
    default = scoped_budget(served.engine, "each_end_user", k * worst + worst // 2, scope=scope)
    outcomes = asyncio.run(_send_held(served, 10 * k, k, "u-1"))
    assert outcomes.count(200) == k
    assert outcomes.count("402 budget_exceeded") == 10 * k - k
    assert len(served.simulator.received) == k  # refused requests never went upstream
    refused = post(served, {**BODY, "user": "u-1", "max_tokens": 100 * k * BODY["max_tokens"]})
    assert refused.status_code == 402  # a worst case over what is left of u-1's budget
    assert (
        "end user budget of end user 'u-1' of customer 'acme'"
        in (refused.json()["error"]["message"])
    )
    for user in ("u-2", "u-3"):  # the same customer's other end users: their own budgets
        assert post(served, {**BODY, "user": user}).status_code == 200
    assert post(served, BODY).status_code == 200  # no end user: no end-user budget
    with served.engine.connect() as conn:
        rows = conn.execute(
            select(Budget.subject, Budget.template_id, Budget.spent_nano, Budget.reserved_nano)
            .where(Budget.owner_type == "end_user")
            .order_by(Budget.subject)
        ).all()
    records = served.records()
    spent = {u: sum(r["total_cost"] for r in records if r["end_user"] == u) for u in ("u-1", "u-2")}
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("u-1", default, 0), ("u-2", default, 0), ("u-3", default, 0),
    ]  # fmt: skip
    assert rows[0][2] == spent["u-1"] <= k * worst + worst // 2
    assert rows[1][2] == spent["u-2"]
    assert_budgets_consistent(served.engine)


def test_explicit_end_user_and_tag_budgets_name_what_refused(served: Served) -> None:
    worst = worst_case(served.engine, BODY)
    scoped_budget(served.engine, "end_user", worst - 1, scope=acme_scope(served.engine),
                  subject="u-9")  # fmt: skip
    scoped_budget(served.engine, "tag", worst - 1, subject="feature=rag")
    refused = post(served, {**BODY, "user": "u-9"})
    assert refused.status_code == 402
    assert (
        "end user budget of end user 'u-9' of customer 'acme' would be exceeded"
        in (refused.json()["error"]["message"])
    )
    tagged = post(served, BODY, tags="beta,feature=rag")
    assert tagged.status_code == 402
    assert "tag budget of tag 'feature=rag' would be exceeded" in tagged.json()["error"]["message"]
    assert served.simulator.received == []
    assert post(served, {**BODY, "user": "u-8"}, tags="beta").status_code == 200
    (record,) = served.records()
    assert (record["end_user"], record["tags"]) == ("u-8", "beta")
    assert_budgets_consistent(served.engine)
