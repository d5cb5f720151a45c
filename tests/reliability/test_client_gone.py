"""A client that goes away while its whole (non-streamed) answer is at the upstream: the
upstream call goes on (the provider bills it), and its record says ``cancelled`` and is
billed from the answer's usage — not ``success``, not $0."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.reliability.conftest import Gateway

pytestmark = pytest.mark.anyio


async def test_a_client_gone_before_the_answer_is_recorded_as_cancelled(
    gateway: Gateway,
) -> None:
    app = gateway.app()
    body = {"model": "openai/gpt-4o", "prompt": "hello", "max_tokens": 20, "sim": {"delay": 0.5}}
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/completions",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {gateway.secret}".encode()),
        ],
        "query_string": b"",
    }
    messages: list[dict[str, Any]] = []
    sent = [False]

    async def receive() -> dict[str, Any]:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}
        await asyncio.sleep(0.1)  # the client hangs up while the upstream is working
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await asyncio.wait_for(app(scope, receive, send), 30)
    assert messages == []  # nobody to answer
    [record] = gateway.records()
    assert (record["status"], record["http_status"]) == ("cancelled", 200)
    assert record["error_message"] == "client disconnected before the answer"
    assert record["cost_source"] == "computed" and not record["usage_estimated"]
    assert record["completion_tokens"] > 0 and record["total_cost"] > 0
    assert len(gateway.simulator.received) == 1
    gateway.assert_budgets_consistent()
