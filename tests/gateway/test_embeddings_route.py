"""``POST /v1/embeddings`` through the real server, driven by the official ``openai`` SDK
(which asks for base64 vectors by default). openai/text-embedding-3-small costs $0.02
per 1M input tokens (20 nano-USD a token); the simulator counts ceil(len/4) tokens per
string and a token array's length."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import openai
import pytest

from metering.storage.budgets import set_budget
from metering.storage.owners import find_owner
from tests.gateway.conftest import Served
from tests.helpers import assert_budgets_consistent

pytestmark = pytest.mark.slow
MODEL = "openai/text-embedding-3-small"


@pytest.mark.parametrize(
    ("given", "tokens"),
    [
        ("hello world", 3),
        (["hello world", "abc"], 4),
        ([1, 2, 3], 3),
        ([[1, 2, 3], [4, 5]], 5),
    ],
)
def test_every_input_form_is_billed_as_input_only(served: Served, given: Any, tokens: int) -> None:
    response = served.client().embeddings.create(model=MODEL, input=given)
    assert response.usage.prompt_tokens == tokens
    assert all(len(item.embedding) == 8 for item in response.data)  # decoded from base64
    [record] = served.records()
    assert record["request_type"] == "embedding"
    assert (record["prompt_tokens"], record["completion_tokens"]) == (tokens, 0)
    assert record["input_cost"] == 20 * tokens
    assert record["total_cost"] == 20 * tokens
    assert (record["provider"], record["model"]) == ("openai", "text-embedding-3-small")
    assert served.simulator.received[-1]["body"]["encoding_format"] == "base64"


def test_float_vectors_and_dimensions_are_forwarded(served: Served) -> None:
    response = served.client().embeddings.create(
        model=MODEL, input="abcd", dimensions=3, encoding_format="float"
    )
    assert [len(item.embedding) for item in response.data] == [3]
    assert served.simulator.received[-1]["body"] == {
        "model": MODEL,
        "input": "abcd",
        "dimensions": 3,
        "encoding_format": "float",
    }
    assert served.records()[0]["total_cost"] == 20


def test_a_budget_reserves_from_the_input_size_and_settles_on_the_usage(served: Served) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with served.engine.begin() as conn:
        owner_id, _ = find_owner(conn, "key", "app")
        set_budget(
            conn, owner_type="key", owner_id=owner_id, limit_nano=10**9, period="monthly", now=now
        )
    served.client().embeddings.create(model=MODEL, input=["one", "two", "three"])
    [record] = served.records()
    assert record["total_cost"] == 20 * 4  # 1 + 1 + 2 tokens
    assert_budgets_consistent(served.engine)


def test_bad_inputs_are_refused_before_the_upstream(served: Served) -> None:
    client = served.client()
    for bad in ([], [[]], [1, "a"], [-1], {"text": "x"}, [["a"]]):
        with pytest.raises(openai.BadRequestError) as refused:
            client.post("/embeddings", body={"model": MODEL, "input": bad}, cast_to=object)
        assert "input" in refused.value.response.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.post(
            "/embeddings", body={"model": MODEL, "input": "x", "dimensions": 0}, cast_to=object
        )
    assert served.simulator.received == []
    assert served.records() == []
