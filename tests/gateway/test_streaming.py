"""Streams through the real process: relayed incrementally, ``[DONE]`` after the commit,
cut and abandoned streams recorded once with an estimate."""

from __future__ import annotations

import json
import time

import httpx2
import pytest

from metering.gateway.streaming import estimate_tokens
from tests.gateway.conftest import Served

pytestmark = pytest.mark.slow

RECORD_DEADLINE_SECONDS = 20


def proxy_client(served: Served) -> httpx2.Client:
    return httpx2.Client(
        base_url=served.url, headers={"authorization": f"Bearer {served.secret}"}, timeout=30
    )


def data_lines(lines: list[str]) -> list[str]:
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def test_chunks_arrive_before_the_upstream_sends_the_last(served: Served) -> None:
    body = {
        "model": "openai/gpt-4o",
        "prompt": "hello world",
        "stream": True,
        "sim": {"hold": "last-chunk", "chunks": 4},
    }
    with (
        proxy_client(served) as client,
        client.stream("POST", "/v1/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        # The simulator is still holding its last chunk: we got the first one before it.
        assert json.loads(first[len("data: ") :])["choices"][0]["text"]
        assert served.records() == []
        served.simulator.open_gate("last-chunk")
        rest = data_lines(list(lines))
        assert rest[-1] == "[DONE]"
        # The record is committed before [DONE] reaches the client.
        [record] = served.records()
    assert record["status"] == "success" and record["cost_source"] == "computed"
    assert len(rest) == 4  # 3 more content chunks + [DONE]; the usage chunk is not relayed


def test_stream_cut_by_the_upstream_is_recorded_as_estimated(served: Served) -> None:
    prompt = "a prompt of forty characters, more or le"
    body = {"model": "openai/gpt-4o", "prompt": prompt, "stream": True, "sim": {"cut_after": 2}}
    with (
        proxy_client(served) as client,
        client.stream("POST", "/v1/completions", json=body) as response,
    ):
        events = data_lines(list(response.iter_lines()))
    assert "[DONE]" not in events
    error = json.loads(events[-1])
    assert error["type"] == "upstream_error" and error["status_code"] == 502
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])
    assert len(events) - 1 == 2 and text
    [record] = served.records()
    assert record["status"] == "stream_cut"
    assert record["cost_source"] == "estimated"
    assert record["prompt_tokens"] == estimate_tokens(prompt) == 10
    assert record["completion_tokens"] == estimate_tokens(text)
    # gpt-4o: 10 x 2.50 + completion x 10.00 (per 1M tokens), in nano-USD
    assert record["total_cost"] == 25_000 + record["completion_tokens"] * 10_000


def test_stream_abandoned_by_the_client_is_recorded_once(served: Served) -> None:
    body = {
        "model": "openai/gpt-4o",
        "prompt": "hello world",
        "stream": True,
        "sim": {"hold": "never-opened", "chunks": 4},
    }
    with (
        proxy_client(served) as client,
        client.stream("POST", "/v1/completions", json=body) as response,
    ):
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert first
    # Client gone: the proxy notices, stops reading the upstream and records an estimate.
    deadline = time.monotonic() + RECORD_DEADLINE_SECONDS
    while not served.records() and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = served.records()
    assert record["status"] == "cancelled"
    assert record["cost_source"] == "estimated"
    assert record["prompt_tokens"] == estimate_tokens("hello world")
    assert record["completion_tokens"] > 0
