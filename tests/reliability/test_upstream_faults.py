"""Every upstream fault of issue 7, through the gateway as ``metering serve`` builds it
(budgets enforced) against the simulator on loopback: the client gets SPEC §4's error
or the upstream's own error unchanged, exactly one record says what happened, and the
request's budget reservation is given back (counters equal the records).

Already covered elsewhere, without the budget checks: 503/400 passthrough, garbage
and a stream cut between events (``tests/gateway``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from metering.gateway.streaming import estimate_tokens
from tests.process import free_port
from tests.reliability.conftest import Gateway

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5  # the gateway's upstream timeout in these tests, seconds
PROMPT = "a prompt of forty characters, more or le"


@dataclass(frozen=True)
class Fault:
    name: str
    sim: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    refused: bool = False  # connection refused: nothing listens upstream
    status: int = 200  # what the client gets
    error_type: str | None = None  # SPEC §4 type of our error (None: passthrough / success)
    passthrough: bool = False  # the upstream's own error body, unchanged
    done: bool = False  # a stream ending in data: [DONE]
    record_status: str = "success"
    record_http: int = 200
    cost_source: str | None = None  # None: not checked (zero-cost records)
    error_in_record: str | None = None  # a fragment of the record's error_message


FAULTS = [
    Fault("connection refused", refused=True, status=502, error_type="upstream_error",
          record_status="upstream_error", record_http=502, error_in_record="unreachable"),
    Fault("connection refused, stream", refused=True, stream=True, status=502,
          error_type="upstream_error", record_status="upstream_error", record_http=502),
    Fault("slow past the timeout", {"delay": 1.5}, status=504, error_type="upstream_timeout",
          record_status="timeout", record_http=504, error_in_record="did not answer"),
    Fault("slow past the timeout, stream", {"delay": 1.5}, stream=True, status=504,
          error_type="upstream_timeout", record_status="timeout", record_http=504),
    Fault("stream stalls past the timeout", {"stall_after": 1, "stall": 1.5}, stream=True,
          record_status="timeout", cost_source="estimated", error_in_record="sent nothing"),
    Fault("500", {"status": 500}, status=500, passthrough=True,
          record_status="upstream_error", record_http=500),
    Fault("503, stream", {"status": 503}, stream=True, status=503, passthrough=True,
          record_status="upstream_error", record_http=503),
    Fault("429 from upstream", {"status": 429}, status=429, passthrough=True,
          record_status="upstream_error", record_http=429),
    Fault("429 from upstream, stream", {"status": 429}, stream=True, status=429,
          passthrough=True, record_status="upstream_error", record_http=429),
    Fault("garbage, stream", {"garbage": True}, stream=True, status=502,
          error_type="upstream_error", record_status="invalid_response", record_http=502),
    Fault("JSON without usage", {"usage": None}, cost_source="estimated",
          error_in_record="no usage"),
    Fault("negative usage", {"usage": {"prompt_tokens": -5, "completion_tokens": 3}},
          cost_source="estimated", error_in_record="negative"),
    Fault("absurd usage", {"usage": {"prompt_tokens": 10**18, "completion_tokens": 10**18}},
          cost_source="estimated", error_in_record="implausible"),
    Fault("usage of the wrong type", {"usage": {"prompt_tokens": "many"}},
          cost_source="estimated", error_in_record="whole number"),
    Fault("stream stops mid-chunk", {"cut_mid_chunk": 1}, stream=True,
          record_status="stream_cut", cost_source="estimated"),
    Fault("stream without a usage chunk", {"usage": None}, stream=True, done=True,
          cost_source="estimated"),
    Fault("stream with absurd usage", {"usage": {"prompt_tokens": 10**18}}, stream=True,
          done=True, cost_source="estimated", error_in_record="implausible"),
]  # fmt: skip


def sse_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_upstream_fault(gateway: Gateway, fault: Fault) -> None:
    upstream = f"http://127.0.0.1:{free_port()}" if fault.refused else None
    app = gateway.app(upstream, upstream_timeout=TIMEOUT)
    body = {"model": "openai/gpt-4o", "prompt": PROMPT, "max_tokens": 50, "sim": fault.sim}
    if fault.stream:
        body["stream"] = True
    async with gateway.client(app) as client:
        response = await client.post("/v1/completions", json=body)

    assert response.status_code == fault.status, response.text
    [record] = gateway.records()
    assert response.headers["x-metering-request-id"] == record["request_id"]
    if fault.error_type is not None:
        error = response.json()
        assert (error["type"], error["status_code"]) == (fault.error_type, fault.status)
        assert error["is_bifrost_error"] is False and error["error"]["message"]
    elif fault.passthrough:
        upstream_body = response.json()
        assert upstream_body["is_bifrost_error"] is True  # the upstream's body, unchanged
        assert upstream_body["error"]["message"] == "simulated provider failure"
    elif fault.stream:
        events = sse_events(response.text)
        # Every event the client gets is whole JSON (or [DONE]): a half event is never relayed.
        for event in events:
            assert event == "[DONE]" or isinstance(json.loads(event), dict), event
        if fault.done:
            assert events[-1] == "[DONE]"
        else:
            assert "[DONE]" not in events
            tail = json.loads(events[-1])
            assert tail["type"] in ("upstream_error", "upstream_timeout")
    else:
        assert response.json()["choices"]  # the upstream's answer, relayed

    assert (record["status"], record["http_status"]) == (fault.record_status, fault.record_http)
    if fault.cost_source is not None:
        assert record["cost_source"] == fault.cost_source
        assert record["prompt_tokens"] == estimate_tokens(PROMPT)
        assert record["total_cost"] > 0
    if fault.error_in_record is not None:
        assert fault.error_in_record in (record["error_message"] or ""), record["error_message"]
    assert record["prompt_tokens"] < 10**9  # absurd counts are never stored
    assert len(gateway.simulator.received) == (0 if fault.refused else 1)
    gateway.assert_budgets_consistent()
