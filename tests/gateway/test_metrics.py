"""``GET /metrics`` through the real server, read with Prometheus' own parser
(``prometheus_client.parser``): counters from the observer seam, token classes that add
up to the total, budget gauges for every budget from the start, a bearer token, and the
counters of ``--workers 2`` added up whichever worker is scraped."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from metering.simulator import Simulator
from metering.storage.budgets import set_budget
from metering.storage.keys import create_key
from metering.storage.owners import find_owner
from tests.gateway.conftest import Served
from tests.process import start_server, stop_server

pytestmark = pytest.mark.slow


def scrape(url: str, **headers: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = httpx2.get(url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def total(samples: list[tuple[dict[str, str], float]], **match: str) -> float:
    return sum(v for labels, v in samples if all(labels.get(k) == m for k, m in match.items()))


def test_metrics_count_calls_tokens_cost_and_budgets(served: Served) -> None:
    with served.engine.begin() as conn:
        owner_id, _ = find_owner(conn, "key", "app")
        now = datetime.now(UTC).replace(tzinfo=None)
        set_budget(
            conn, owner_type="key", owner_id=owner_id, limit_nano=5 * 10**9, period="monthly",
            now=now,
        )  # fmt: skip
    before = scrape(served.url)
    assert total(before["metering_budget_limit_usd"], owner="app") == 5.0  # before any call
    assert total(before["metering_budget_spent_usd"], owner="app") == 0.0
    client = served.client()
    client.completions.create(model="openai/gpt-4o", prompt="hello world", n=2)
    client.chat.completions.create(
        model="openai/o3-mini", messages=[{"role": "user", "content": "think"}]
    )
    failing = {"model": "openai/gpt-4o", "prompt": "x", "sim": {"status": 503}}
    auth = {"authorization": f"Bearer {served.secret}"}
    assert (
        httpx2.post(served.url + "/v1/completions", json=failing, headers=auth).status_code == 503
    )
    bad = httpx2.post(served.url + "/v1/completions", json={"model": "bad"}, headers=auth)
    assert bad.status_code == 400
    samples = scrape(served.url)
    requests = samples["metering_requests_total"]
    assert total(requests, route="text_completion", code="200") == 1
    assert total(requests, route="chat_completion", model="o3-mini", code="200") == 1
    assert total(requests, route="text_completion", code="503") == 1
    assert total(samples["metering_upstream_errors_total"], kind="upstream_error") == 1
    refused = samples["metering_refused_requests_total"]
    assert total(refused, route="text_completion", code="400", type="invalid_request_error") == 1
    records = served.records()
    tokens = samples["metering_tokens_total"]
    assert total(tokens) == sum(r["total_tokens"] for r in records)  # classes never overlap
    assert total(tokens, **{"class": "reasoning"}) == sum(r["reasoning_tokens"] for r in records)
    assert total(tokens, **{"class": "cache_read"}) == sum(r["cached_read_tokens"] for r in records)
    cost = Decimal(str(total(samples["metering_cost_usd_total"], key="app")))
    exact = Decimal(sum(r["total_cost"] for r in records)) / 10**9
    assert abs(cost - exact) < Decimal("1e-12")
    assert total(samples["metering_upstream_seconds_count"], route="text_completion") == 2
    assert total(samples["metering_added_seconds_count"], route="chat_completion") == 1
    spent = Decimal(str(total(samples["metering_budget_spent_usd"], owner="app")))
    assert spent == exact
    assert total(samples["metering_budget_period_end_timestamp_seconds"], owner="app") > 0
    assert total(samples["metering_journal_pending_records"]) == 0
    assert "metering_writer_queue_depth" in samples
    assert served.secret not in str(samples)  # never a secret


def test_metrics_can_require_a_bearer_and_drop_key_labels(
    db_url: str, engine: Engine, simulator: Simulator
) -> None:
    with engine.begin() as conn:
        secret = create_key(conn, name="quiet").secret
    url, process = start_server(
        db_url, simulator.url, METERING_METRICS_TOKEN="scrape-me", METERING_METRICS_KEY_LABELS="0"
    )
    try:
        assert httpx2.get(url + "/metrics").status_code == 401
        headers = {"authorization": f"Bearer {secret}"}
        httpx2.post(url + "/v1/completions", json={"model": "openai/gpt-4o", "prompt": "x"},
                    headers=headers).raise_for_status()  # fmt: skip
        samples = scrape(url, authorization="Bearer scrape-me")
        assert samples["metering_cost_usd_total"]
        assert all("key" not in labels for labels, _ in samples["metering_cost_usd_total"])
    finally:
        stop_server(process)


def test_metrics_can_be_turned_off(db_url: str, engine: Engine, simulator: Simulator) -> None:
    """METERING_METRICS=false: no /metrics route (404 in SPEC shape), calls metered as ever."""
    with engine.begin() as conn:
        secret = create_key(conn, name="dark").secret
    url, process = start_server(db_url, simulator.url, METERING_METRICS="false")
    try:
        body = {"model": "openai/gpt-4o", "prompt": "x"}
        answer = httpx2.post(
            url + "/v1/completions", json=body, headers={"authorization": f"Bearer {secret}"}
        )
        answer.raise_for_status()
        off = httpx2.get(url + "/metrics")
        assert off.status_code == 404
        assert off.json()["error"]["type"] == "not_found"
    finally:
        stop_server(process)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT request_id FROM usage_records")).scalars().all()
    assert rows == [answer.headers["x-metering-request-id"]]


def test_counters_add_up_across_workers(db_url: str, engine: Engine, simulator: Simulator) -> None:
    with engine.begin() as conn:
        secret = create_key(conn, name="many").secret
    url, process = start_server(db_url, simulator.url, extra_args=("--workers", "2"))
    try:
        headers = {"authorization": f"Bearer {secret}"}
        body: dict[str, Any] = {"model": "openai/gpt-4o", "prompt": "x"}
        calls = 24
        for _ in range(calls):  # new connections: spread over both workers
            httpx2.post(url + "/v1/completions", json=body, headers=headers).raise_for_status()
        for _ in range(4):  # whichever worker answers the scrape
            samples = scrape(url)
            assert total(samples["metering_requests_total"], route="text_completion") == calls
    finally:
        stop_server(process)
