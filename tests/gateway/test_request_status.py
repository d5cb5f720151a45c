"""Callers see what they spent: ``x-metering-cost-usd`` on whole responses and
``GET /v1/requests/{id}`` (the same virtual key), through the real server."""

from __future__ import annotations

from decimal import Decimal

import httpx2
import pytest

from metering.core.money import format_usd
from metering.storage.keys import create_key
from tests.gateway.conftest import Served

pytestmark = pytest.mark.slow


def test_a_whole_response_carries_its_billed_cost(served: Served) -> None:
    raw = served.client().completions.with_raw_response.create(
        model="openai/gpt-4o", prompt="hello world", n=2
    )
    [record] = served.records()
    assert record["total_cost"] == 341_250
    assert raw.headers["x-metering-cost-usd"] == "0.00034125"
    failed = httpx2.post(
        served.url + "/v1/completions",
        json={"model": "openai/gpt-4o", "prompt": "x", "sim": {"status": 503}},
        headers={"authorization": f"Bearer {served.secret}"},
    )
    assert (failed.status_code, failed.headers["x-metering-cost-usd"]) == (503, "0")


def test_a_caller_reads_its_own_settled_record(served: Served) -> None:
    raw = served.client().chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    list(raw.parse())  # a stream: settled when it ends
    request_id = raw.headers["x-metering-request-id"]
    mine = httpx2.get(
        f"{served.url}/v1/requests/{request_id}",
        headers={"authorization": f"Bearer {served.secret}"},
    )
    assert mine.status_code == 200, mine.text
    body = mine.json()
    [record] = served.records()
    assert body["request_id"] == request_id and body["stream"] is True
    assert body["status"] == "success" and body["currency"] == "USD"
    assert body["usage"]["prompt_tokens"] == record["prompt_tokens"]
    assert body["usage"]["cached_read_tokens"] == record["cached_read_tokens"]
    assert body["cost"]["total"] == format_usd(record["total_cost"])
    assert body["cost"]["input"] == format_usd(record["input_cost"])
    assert body["cost"]["output"] == format_usd(record["output_cost"])
    parts = sum(Decimal(v) for k, v in body["cost"].items() if k != "total")
    assert parts == Decimal(body["cost"]["total"])  # the components add up exactly
    with served.engine.begin() as conn:
        other = create_key(conn, name="other").secret
    for secret, status in ((other, 404), ("sk-bf-nobody", 401)):
        seen = httpx2.get(
            f"{served.url}/v1/requests/{request_id}", headers={"authorization": f"Bearer {secret}"}
        )
        assert seen.status_code == status  # another key's request is not shown
    unknown = httpx2.get(
        f"{served.url}/v1/requests/nope", headers={"authorization": f"Bearer {served.secret}"}
    )
    assert (unknown.status_code, unknown.json()["type"]) == (404, "not_found")
