"""Model-narrowed budgets through the real `metering serve` process (SQLite and
PostgreSQL): a budget on some models refuses them with a 402 that names its pattern and
leaves other models alone; the reservation is the dearest candidate's worst case; after a
fallback the model that served is charged. Counters = records after each test."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import openai
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

PROMPT: dict[str, Any] = {"prompt": "count the budget", "max_tokens": 50}
CLAUDE = "anthropic/claude-sonnet-4-5"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def worst(engine: Engine, model: str) -> int:
    provider, _, name = model.partition("/")
    with engine.connect() as conn:
        version = load_price_book(conn).lookup(provider, name, _now().date())
    assert version is not None
    return reservation_nano(shape_of_request({"model": model, **PROMPT}), version)


def budget(engine: Engine, pattern: str, limit_nano: int) -> int:
    with engine.begin() as conn:
        key_id, _ = find_owner(conn, "key", "app")
        status = set_budget(conn, owner_type="key", owner_id=key_id, limit_nano=limit_nano,
                            period="monthly", model_pattern=pattern, now=_now())  # fmt: skip
    return status.budget_id


def counters(engine: Engine, budget_id: int) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            select(Budget.spent_nano, Budget.reserved_nano).where(Budget.id == budget_id)
        ).one()
    return int(row[0]), int(row[1])


def refusal(client: openai.OpenAI, model: str, **extra: Any) -> dict[str, Any]:
    with pytest.raises(openai.APIStatusError) as refused:
        client.completions.create(model=model, **PROMPT, extra_body=extra or None)
    assert refused.value.status_code == 402
    error: dict[str, Any] = refused.value.response.json()["error"]
    assert error["type"] == "budget_exceeded"
    return error


def test_a_model_budget_refuses_its_models_and_leaves_the_others(served: Served) -> None:
    gpt4o = budget(served.engine, "openai/gpt-4o", worst(served.engine, "openai/gpt-4o") - 1)
    client = served.client()
    error = refusal(client, "openai/gpt-4o")
    assert (
        "key budget of key 'app' for models 'openai/gpt-4o' would be exceeded" in (error["message"])
    )
    assert served.simulator.received == []  # refused before the upstream
    client.completions.create(model="openai/gpt-4o-mini", **PROMPT)  # not narrowed to it
    (record,) = served.records()
    assert (record["provider"], record["model"]) == ("openai", "gpt-4o-mini")
    assert counters(served.engine, gpt4o) == (0, 0)
    assert_budgets_consistent(served.engine)


def test_reserved_at_the_dearest_candidate_charged_on_the_served_one(served: Served) -> None:
    """Claude is dearer than gpt-4o: a gpt-4o budget that fits gpt-4o's worst case alone
    refuses the same request once Claude may serve it, as a fallback."""
    dear, cheap = worst(served.engine, CLAUDE), worst(served.engine, "openai/gpt-4o")
    assert dear > cheap
    openai_budget = budget(served.engine, "openai/*", cheap + (dear - cheap) // 2)
    anthropic_budget = budget(served.engine, "anthropic/*", 10 * dear)
    client = served.client()
    error = refusal(client, "openai/gpt-4o", fallbacks=[CLAUDE])
    assert "for models 'openai/*'" in error["message"]
    assert served.simulator.received == []
    client.completions.create(model="openai/gpt-4o", **PROMPT)  # without it: fits
    (direct,) = served.records()
    assert counters(served.engine, openai_budget) == (direct["total_cost"], 0)
    assert counters(served.engine, anthropic_budget) == (0, 0)
    # With room for Claude's worst case, the primary fails and Claude serves: charged to
    # the anthropic budget only; both reservations are released.
    budget(served.engine, "openai/*", 10 * dear)
    client.completions.create(
        model="openai/gpt-4o",
        **PROMPT,
        extra_body={"fallbacks": [CLAUDE], "sim": {"fail_primary": True}},
    )
    fallback = served.records()[-1]
    assert (fallback["provider"], fallback["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert counters(served.engine, anthropic_budget) == (fallback["total_cost"], 0)
    assert counters(served.engine, openai_budget) == (direct["total_cost"], 0)
    assert_budgets_consistent(served.engine)
