"""The route table: what the gateway answers (and nothing else), 404/405 from one place,
every route that reaches the upstream reserves before and records after, and the model
list filtered to the key's models."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx2
import openai
import pytest
from sqlalchemy import Engine, select

from metering.config import Settings
from metering.gateway import create_app
from metering.gateway.responses import ErrorStyle
from metering.gateway.routing import Mount, Route, Router
from metering.storage.budgets import set_budget
from metering.storage.keys import create_key
from metering.storage.models import Budget
from metering.storage.owners import find_owner
from tests.gateway.conftest import Served
from tests.helpers import assert_budgets_consistent

# What a real application sends on each model call route (the simulator answers all).
CALLS: dict[str, dict[str, Any]] = {
    "/v1/completions": {"model": "openai/gpt-4o", "prompt": "hi", "max_tokens": 8},
    "/v1/chat/completions": {
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
    },
    "/v1/responses": {"model": "openai/gpt-4o", "input": "hi", "max_output_tokens": 8},
    "/v1/embeddings": {"model": "openai/text-embedding-3-small", "input": "hi"},
    "/v1/messages": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/anthropic/v1/messages": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    },
}
OTHERS = {
    "/v1/models": ("GET",),
    "/v1/requests/{request_id}": ("GET",),
    "/v1/budget": ("GET",),
    "/health": ("GET",),
    "/metrics": ("GET",),
}


def test_the_table_is_every_route_the_gateway_answers(engine: Engine) -> None:
    app = create_app(Settings(upstream_url="http://127.0.0.1:9"), engine)
    assert app.router.paths == {**dict.fromkeys(CALLS, ("POST",)), **OTHERS}


async def _call(router: Router, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await router({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def test_404_and_405_come_from_the_router() -> None:
    hits: list[str] = []

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        hits.append(scope["method"] + " " + scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    anthropic = ErrorStyle(anthropic=True)
    router = Router(
        [
            Route("/a", ("GET",), handler),
            Mount("/x", (Route("/b", ("POST",), handler, anthropic),)),
        ]
    )
    assert router.paths == {"/a": ("GET",), "/x/b": ("POST",)}
    params: list[Any] = []

    async def echo(scope: Any, receive: Any, send: Any) -> None:
        params.append(scope["path_params"])
        await handler(scope, receive, send)

    with_param = Router([Route("/r/{rid}", ("GET",), echo)])
    assert asyncio.run(_call(with_param, "GET", "/r/abc"))[0] == 204
    assert params == [{"rid": "abc"}]
    assert asyncio.run(_call(with_param, "GET", "/r/abc/d"))[0] == 404
    hits.clear()
    assert asyncio.run(_call(router, "HEAD", "/a"))[0] == 204  # HEAD wherever GET
    assert asyncio.run(_call(router, "POST", "/x/b"))[0] == 204
    assert hits == ["HEAD /a", "POST /x/b"]
    status, _, body = asyncio.run(_call(router, "GET", "/b"))
    assert status == 404 and b'"type":"not_found"' in body and b"is_bifrost_error" in body
    status, headers, body = asyncio.run(_call(router, "GET", "/x/b"))
    assert (status, headers[b"allow"]) == (405, b"POST")
    assert body.startswith(b'{"type":"error","error":{"type":"method_not_allowed"')
    assert len(hits) == 2


@pytest.mark.slow
def test_any_other_route_is_refused_never_passed_through(served: Served) -> None:
    headers = {"authorization": f"Bearer {served.secret}"}
    others = ("/v1/images/generations", "/v1/audio/speech", "/anthropic/v1/complete",
              "/v1/completions/x", "/v1/files", "/v1/batches", "/anthropic/v1/models")  # fmt: skip
    for path in others:
        response = httpx2.post(served.url + path, json=CALLS["/v1/completions"], headers=headers)
        assert response.status_code == 404, path
        assert response.json()["type"] == "not_found"
    wrong = httpx2.get(served.url + "/v1/responses", headers=headers)
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert served.simulator.received == []
    assert served.records() == []


def _reserved(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(Budget.reserved_nano)).scalar_one())


@pytest.mark.slow
@pytest.mark.parametrize("path", list(CALLS))
def test_every_route_that_reaches_the_upstream_reserves_and_records(
    served: Served, path: str
) -> None:
    with served.engine.begin() as conn:
        key_id, _ = find_owner(conn, "key", "app")
        now = datetime.now(UTC).replace(tzinfo=None)
        set_budget(
            conn, owner_type="key", owner_id=key_id, limit_nano=10**10, period="monthly", now=now
        )
    body = {**CALLS[path], "sim": {"hold": path}}
    answer: list[httpx2.Response] = []
    headers = {"authorization": f"Bearer {served.secret}"}
    sender = threading.Thread(
        target=lambda: answer.append(
            httpx2.post(served.url + path, json=body, headers=headers, timeout=30)
        )
    )
    sender.start()
    deadline = time.monotonic() + 30  # only guards against a hang
    while not served.simulator.received and time.monotonic() < deadline:
        time.sleep(0.02)
    assert served.simulator.received, "the call never reached the upstream"
    assert _reserved(served.engine) > 0  # reserved before the upstream was called
    served.simulator.open_gate(path)
    sender.join(30)
    assert answer and answer[0].status_code == 200, answer
    [record] = served.records()
    assert record["request_id"] == answer[0].headers["x-metering-request-id"]
    assert record["total_cost"] > 0 and record["status"] == "success"
    assert _reserved(served.engine) == 0
    with served.engine.connect() as conn:
        spent = conn.execute(select(Budget.spent_nano)).scalar_one()
    assert spent == record["total_cost"]
    assert_budgets_consistent(served.engine)


@pytest.mark.slow
def test_the_model_list_shows_only_the_keys_models(served: Served) -> None:
    everything = {m.id for m in served.client().models.list()}
    assert {"openai/gpt-4o", "anthropic/claude-sonnet-4-5"} <= everything
    with served.engine.begin() as conn:
        narrow = create_key(conn, name="narrow", allowed_models=["openai/gpt-4o*"]).secret
    seen = {m.id for m in served.client(narrow).models.list()}
    assert seen == {m for m in everything if m.startswith("openai/gpt-4o")} and seen
    assert served.simulator.received[-1]["path"] == "/v1/models"
    with pytest.raises(openai.AuthenticationError):
        served.client("sk-bf-unknown").models.list()
    no_key = httpx2.get(served.url + "/v1/models")
    assert (no_key.status_code, no_key.json()["type"]) == (401, "virtual_key_required")
    assert served.records() == []  # listing models costs nothing: not recorded
