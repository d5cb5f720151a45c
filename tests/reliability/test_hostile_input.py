"""Hostile input, fuzzed with Hypothesis against the gateway in process (raw ASGI, so
headers and bodies can be anything a socket could carry): malformed JSON, invalid
UTF-8, wrong types, deep nesting, absurd ``max_tokens``/``n``, oversized bodies,
header injection. Never a 5xx from our code; every refusal is SPEC §4's error with
the right type; nothing recorded for a refused request; the app still serves after.

The upstream is the simulator; a request our validation lets through may be refused
by it (its own 4xx, passed through). Both backends: PostgreSQL enforces column
lengths that SQLite ignores."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from metering.gateway import GatewayApp
from metering.simulator import Simulator
from metering.storage.keys import create_key
from tests.reliability.conftest import Gateway, new_gateway

OUR_TYPES = {
    400: "invalid_request_error",
    401: {"virtual_key_required", "virtual_key_not_found"},
    402: "budget_exceeded",  # the key's $100 budget cannot cover an absurd max_tokens x n
    403: "model_unpriced",  # an unknown model cannot be checked against the budget
    413: "request_too_large",
}
MAX_BYTES = 64 * 1024
EXAMPLES = 60
BODY_EXAMPLES = 200

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
models = st.one_of(
    st.just("openai/gpt-4o"),
    st.integers(min_value=0, max_value=500).map(lambda n: "openai/" + "m" * n),
    st.integers(min_value=1, max_value=200).map(lambda n: "p" * n + "/gpt-4o"),
    st.text(max_size=30),
    st.builds(lambda p, m: f"{p}/{m}", st.text(max_size=120), st.text(max_size=400)),
)
FIELDS = ["max_tokens", "n", "best_of", "stream", "fallbacks", "temperature", "stop",
          "logit_bias", "messages", "stream_options", "user", "extra"]  # fmt: skip
absurd_ints = st.sampled_from([-1, 0, 129, 10**6, 2**31, 2**53, 2**63 - 1, -(2**63), 10**18])
bodies = st.fixed_dictionaries(
    {"model": models, "prompt": st.text(max_size=30) | json_values},
    optional={f: json_values | absurd_ints for f in FIELDS},
)


async def call(
    app: GatewayApp, body: bytes, headers: list[tuple[bytes, bytes]], path: str
) -> tuple[int, dict[str, Any] | None, list[tuple[bytes, bytes]]]:
    """One raw ASGI request; the status, the JSON body (if JSON) and response headers."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json"), *headers],
        "query_string": b"",
    }
    chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)] or [b""]
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await asyncio.wait_for(app(scope, receive, send), 30)
    start = next(m for m in messages if m["type"] == "http.response.start")
    raw = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    return start["status"], parsed if isinstance(parsed, dict) else None, start["headers"]


def check(status: int, body: dict[str, Any] | None) -> bool:
    """True if refused by us (SPEC §4 shape and type); asserts it was never a 5xx."""
    assert status < 500, (status, body)
    if status < 400:
        return False
    assert body is not None, status
    if body.get("is_bifrost_error") is True:
        return False  # the upstream's own refusal, passed through (and recorded)
    expected = OUR_TYPES[status]
    assert body["type"] in (expected if isinstance(expected, set) else {expected}), body
    assert body["status_code"] == status and body["error"]["message"]
    return True


def run_fuzz(gateway: Gateway, case: Callable[..., Any], examples: int = EXAMPLES) -> None:
    """Run the Hypothesis ``case(runner, app, …)`` against one app, then check it still serves."""
    with asyncio.Runner() as runner:
        app = gateway.app(max_request_bytes=MAX_BYTES)
        try:
            fuzz = settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            )(case)
            fuzz(runner, app)
            status, body, _ = runner.run(
                call(app, b'{"model":"openai/gpt-4o","prompt":"still up"}', auth(gateway), PATH)
            )
            assert status == 200 and body is not None and body["choices"]
        finally:
            runner.run(app.shutdown())


PATH = "/v1/completions"


def auth(gateway: Gateway) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {gateway.secret}".encode())]


def refused_leaves_no_record(gateway: Gateway, before: int, refused: bool) -> None:
    after = len(gateway.records())
    if refused:
        assert after == before
    else:
        assert after == before + 1  # admitted: exactly one record


@pytest.fixture
def gateway(engine: Engine, simulator: Simulator) -> Gateway:
    return new_gateway(engine, simulator)


@pytest.fixture
def unbudgeted(engine: Engine) -> str:
    """A key no budget applies to: any model is forwarded, priced or not."""
    with engine.begin() as conn:
        return create_key(conn, name="free").secret


def test_json_bodies_with_wrong_types_and_absurd_values(gateway: Gateway, unbudgeted: str) -> None:
    @given(body=bodies, chat=st.booleans(), budgeted=st.booleans())
    def case(
        runner: asyncio.Runner, app: GatewayApp, body: dict[str, Any], chat: bool, budgeted: bool
    ) -> None:
        before = len(gateway.records())
        path = "/v1/chat/completions" if chat else PATH
        key = auth(gateway) if budgeted else [(b"x-bf-vk", unbudgeted.encode())]
        status, answer, _ = runner.run(call(app, orjson.dumps(body), key, path))
        refused = check(status, answer)
        refused_leaves_no_record(gateway, before, refused)

    run_fuzz(gateway, case, BODY_EXAMPLES)


def test_bytes_that_are_not_json(gateway: Gateway) -> None:
    nested = st.integers(min_value=1, max_value=5000).map(lambda d: b"[" * d + b"]" * d)
    invalid_utf8 = st.binary(max_size=60).map(
        lambda b: b'{"model":"openai/gpt-4o","prompt":"\xff' + b + b'"}'
    )
    deep_object = st.integers(min_value=100, max_value=3000).map(
        lambda d: (
            b'{"model":"openai/gpt-4o","prompt":"x","extra":'
            + b'{"a":' * d
            + b"1"
            + b"}" * d
            + b"}"
        )
    )

    @given(raw=st.binary(max_size=200) | nested | invalid_utf8 | deep_object)
    def case(runner: asyncio.Runner, app: GatewayApp, raw: bytes) -> None:
        before = len(gateway.records())
        status, answer, _ = runner.run(call(app, raw, auth(gateway), PATH))
        refused = check(status, answer)
        refused_leaves_no_record(gateway, before, refused)

    run_fuzz(gateway, case)


def test_oversized_bodies_are_413(gateway: Gateway) -> None:
    @given(extra=st.integers(min_value=1, max_value=3 * MAX_BYTES), declared=st.booleans())
    def case(runner: asyncio.Runner, app: GatewayApp, extra: int, declared: bool) -> None:
        raw = b'{"model":"openai/gpt-4o","prompt":"' + b"x" * (MAX_BYTES + extra) + b'"}'
        headers = auth(gateway)
        if declared:
            headers.append((b"content-length", str(len(raw)).encode()))
        status, answer, _ = runner.run(call(app, raw, headers, PATH))
        assert status == 413 and check(status, answer)

    run_fuzz(gateway, case)
    assert gateway.records() == [] or all(r["prompt_tokens"] < MAX_BYTES for r in gateway.records())


def test_header_injection_and_garbage_keys(gateway: Gateway) -> None:
    header_bytes = st.binary(max_size=80) | st.sampled_from(
        [b"Bearer sk-bf-x\r\nx-bf-vk: sk-bf-y", b"Bearer \x00\xff", b"sk-bf-" + b"a" * 5000,
         b"Bearer sk-bf-' OR '1'='1", b"Basic c2stYmY6eA==", b"Bearer"]
    )  # fmt: skip

    @given(value=header_bytes, name=st.sampled_from([b"authorization", b"x-bf-vk"]))
    def case(runner: asyncio.Runner, app: GatewayApp, value: bytes, name: bytes) -> None:
        body = b'{"model":"openai/gpt-4o","prompt":"x"}'
        status, answer, headers = runner.run(call(app, body, [(name, value)], PATH))
        assert status == 401 and check(status, answer)
        # Nothing of the request is echoed into a response header.
        assert {name for name, _ in headers} == {b"content-type", b"content-length"}
        assert all(b"\r" not in v and b"\n" not in v for _, v in headers)

    run_fuzz(gateway, case)
    # Only the final "still up" request got through.
    assert len(gateway.records()) == len(gateway.simulator.received) == 1
