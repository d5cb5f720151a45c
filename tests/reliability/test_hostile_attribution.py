"""Hostile tags and end-user ids (README, Attribution): a NUL, 10k characters, 1,000 tags,
on every model call route, against the gateway in process exactly as ``metering serve``
builds it (raw ASGI, so a header may hold what a socket could carry). Each gets 400 in
its route's error shape, nothing is sent upstream and nothing is recorded; the gateway
serves a good request after. Both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from metering.simulator import Simulator
from tests.reliability.conftest import Gateway, new_gateway
from tests.reliability.test_hostile_input import ANTHROPIC, PROMPTS, ROUTES, auth, call, check


@pytest.fixture
def gateway(engine: Engine, simulator: Simulator) -> Gateway:
    return new_gateway(engine, simulator)


def good(path: str) -> dict[str, Any]:
    """A valid request on ``path``: its prompt in the route's field."""
    field, needs = ROUTES[path]
    return {"model": "openai/gpt-4o", field: PROMPTS[field], **needs}


HOSTILE_TAGS = {
    "nul": b"feature=rag,be\x00ta",
    "escape": b"\x1b[31mred",
    "ten_thousand_chars": b"t" * 10_000,
    "thousand_tags": b",".join(b"t%d" % i for i in range(1_000)),
    "twenty_one_tags": b",".join(b"t%d" % i for i in range(21)),
    "empty_tag": b"feature=rag,,beta",
    "not_utf8": b"feature=\xff\xfe",
}
HOSTILE_USERS = {
    "nul": "user\x00one",
    "newline": "user\none",
    "ten_thousand_chars": "u" * 10_000,
    "just_over": "u" * 129,
}


def _with_end_user(path: str, who: Any) -> dict[str, Any]:
    body = good(path)
    if path in ANTHROPIC:
        body["metadata"] = {"user_id": who}
    elif path == "/v1/responses":
        body["safety_identifier"] = who
    else:
        body["user"] = who
    return body


def _refused(gateway: Gateway, path: str, body: dict[str, Any], tags: bytes | None) -> None:
    headers = auth(gateway)
    if path in ANTHROPIC:
        headers.append((b"anthropic-version", b"2023-06-01"))
    if tags is not None:
        headers.append((b"x-metering-tags", tags))
    app = gateway.app()
    with asyncio.Runner() as runner:
        try:
            status, answer, _ = runner.run(call(app, orjson.dumps(body), headers, path))
            assert status == 400, (path, answer)
            assert check(status, answer, path)
            message = answer["error"]["message"] if answer else ""
            assert "tag" in message or "end-user" in message or "user_id" in message, message
            # still serving
            valid = orjson.dumps(good(path))
            ok, body_ok, _ = runner.run(call(app, valid, headers[:-1] if tags else headers, path))
            assert ok == 200, body_ok
        finally:
            runner.run(app.shutdown())


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize("case", list(HOSTILE_TAGS))
def test_hostile_tags_are_refused_before_the_upstream(
    gateway: Gateway, path: str, case: str
) -> None:
    _refused(gateway, path, good(path), HOSTILE_TAGS[case])
    # only the good request went upstream and was recorded
    assert len(gateway.simulator.received) == 1
    assert len(gateway.records()) == 1


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize("case", list(HOSTILE_USERS))
def test_hostile_end_users_are_refused_before_the_upstream(
    gateway: Gateway, path: str, case: str
) -> None:
    _refused(gateway, path, _with_end_user(path, HOSTILE_USERS[case]), None)
    assert len(gateway.simulator.received) == 1
    assert len(gateway.records()) == 1


def test_a_non_string_anthropic_user_id_is_refused(gateway: Gateway) -> None:
    _refused(gateway, "/anthropic/v1/messages", _with_end_user(ANTHROPIC[0], 42), None)
    assert len(gateway.simulator.received) == 1


def test_bounds_themselves_are_accepted(gateway: Gateway) -> None:
    """20 tags of 64 characters and a 128-character end user: recorded as sent."""
    tags = [f"k{i:02d}=" + "v" * 60 for i in range(20)]
    who = "u" * 128
    body = _with_end_user("/v1/chat/completions", who)
    headers = [*auth(gateway), (b"x-metering-tags", ",".join(tags).encode())]
    app = gateway.app()
    with asyncio.Runner() as runner:
        try:
            status, answer, _ = runner.run(
                call(app, orjson.dumps(body), headers, "/v1/chat/completions")
            )
        finally:
            runner.run(app.shutdown())
    assert status == 200, answer
    (record,) = gateway.records()
    assert record["end_user"] == who
    assert record["tags"] == ",".join(sorted(tags))
