"""Hostile input, fuzzed with Hypothesis against the gateway in process (raw ASGI, so
headers and bodies can be anything a socket could carry): malformed JSON, invalid
UTF-8, wrong types, deep nesting, absurd ``max_tokens``/``n``, oversized bodies,
header injection, on every model call route (``ROUTES``). Never a 5xx from our code;
every refusal is its route's error shape (SPEC §4, or Anthropic's) with the right type;
nothing recorded for a refused request; the app still serves after.

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

from metering.core.storable import has_control
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
# Names no database column may hold, or that name several models: always 400, never sent.
control_chars = st.sampled_from(["\x00", "\x01", "\x1b", "\n", "\r", "\t", "\x7f", "\x85", "\x9f"])
hostile_models = st.one_of(
    st.builds(lambda c, i: "openai/gpt-4o-mini"[:i] + c + "x", control_chars,
              st.integers(min_value=0, max_value=18)),
    st.builds(lambda a, b: f"openai/{a},openai/{b}", st.sampled_from(["gpt-4o-mini", "gpt-4o"]),
              st.sampled_from(["gpt-4o-mini", "gpt-4o", ""])),
    st.integers(min_value=301, max_value=5000).map(lambda n: "openai/" + "m" * n),
    st.integers(min_value=101, max_value=300).map(lambda n: "p" * n + "/m"),
)  # fmt: skip
models = st.one_of(
    st.just("openai/gpt-4o"),
    hostile_models,
    st.integers(min_value=0, max_value=500).map(lambda n: "openai/" + "m" * n),
    st.integers(min_value=1, max_value=200).map(lambda n: "p" * n + "/gpt-4o"),
    st.text(max_size=30),
    st.builds(lambda p, m: f"{p}/{m}", st.text(max_size=120), st.text(max_size=400)),
)
FIELDS = ["max_tokens", "n", "best_of", "stream", "temperature", "stop",
          "logit_bias", "messages", "stream_options", "user", "extra"]  # fmt: skip
absurd_ints = st.sampled_from([-1, 0, 129, 10**6, 2**31, 2**53, 2**63 - 1, -(2**63), 10**18])
fallback_lists = st.lists(st.just("openai/gpt-4o-mini") | hostile_models, max_size=3)
bodies = st.fixed_dictionaries(
    {"model": models, "prompt": st.text(max_size=30) | json_values},
    optional={
        "fallbacks": json_values | absurd_ints | fallback_lists,
        **{f: json_values | absurd_ints for f in FIELDS},
    },
)
# Every model call route: its path, the field that holds its prompt, what a valid
# request also needs (each gets the fuzzed prompt in that field).
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "/v1/completions": ("prompt", {}),
    "/v1/chat/completions": ("messages", {}),
    "/v1/responses": ("input", {}),
    "/v1/embeddings": ("input", {}),
    "/anthropic/v1/messages": ("messages", {"max_tokens": 16}),
    "/v1/messages": ("messages", {"max_tokens": 16}),
}
ANTHROPIC = ("/anthropic/v1/messages", "/v1/messages")
PROMPTS = {
    "prompt": "hi",
    "messages": [{"role": "user", "content": "hi"}],
    "input": "hi",
}


def on_route(body: dict[str, Any], path: str) -> dict[str, Any]:
    """A fuzzed body moved onto ``path``: its prompt in the route's field."""
    field, needs = ROUTES[path]
    body = dict(body)
    prompt = body.pop("prompt")
    if field == "messages" and "messages" not in body:
        body["messages"] = prompt
    elif field != "messages":
        body[field] = prompt
    return {**needs, **body}


def hostile_names(body: dict[str, Any]) -> bool:
    """True if the body's model or a fallback is a name that must be refused."""
    names = [body["model"]]
    fallbacks = body.get("fallbacks")
    if isinstance(fallbacks, list):
        names += fallbacks
    return any(
        isinstance(n, str)
        and (
            any(c in n for c in "\x00\x01\x1b\n\r\t\x7f\x85\x9f,")
            or len(n) > 300
            or len(n.partition("/")[0]) > 100
        )
        for n in names
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


def check(status: int, body: dict[str, Any] | None, path: str = "/v1/completions") -> bool:
    """True if refused by us (its route's error shape and type); asserts it was never a
    5xx."""
    assert status < 500, (status, body)
    if status < 400:
        return False
    assert body is not None, status
    if body.get("is_bifrost_error") is True:
        return False  # the upstream's own refusal, passed through (and recorded)
    expected = OUR_TYPES[status]
    types = expected if isinstance(expected, set) else {expected}
    if path in ANTHROPIC:
        assert body["type"] == "error" and body["error"]["type"] in types, body
    else:
        assert body["type"] in types, body
        assert body["status_code"] == status
    assert body["error"]["message"]
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
    @given(body=bodies, path=st.sampled_from(list(ROUTES)), budgeted=st.booleans())
    def case(
        runner: asyncio.Runner, app: GatewayApp, body: dict[str, Any], path: str, budgeted: bool
    ) -> None:
        before, sent = len(gateway.records()), len(gateway.simulator.received)
        body = on_route(body, path)
        key = auth(gateway) if budgeted else [(b"x-bf-vk", unbudgeted.encode())]
        status, answer, _ = runner.run(call(app, orjson.dumps(body), key, path))
        reached = len(gateway.simulator.received) > sent
        assert status < 500, (status, answer)
        refused = check(status, answer, path) if not reached else False
        refused_leaves_no_record(gateway, before, refused)
        if hostile_names(body) and status != 401:
            assert status == 400 and answer is not None, (status, answer)
            error_type = answer["error"]["type"] if path in ANTHROPIC else answer["type"]
            assert error_type == "invalid_request_error"
            assert not reached  # nothing went upstream

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


# What a strange upstream may answer: values no column can hold as they are.
upstream_text = st.one_of(
    st.builds(lambda c, n: "gpt-4o" + c * n + "x", control_chars, st.integers(1, 3)),
    st.integers(min_value=301, max_value=20_000).map(lambda n: "m" * n),
    st.just("line\u2028separator") | st.just(""),
    st.text(max_size=40),
)
upstream_answers = st.fixed_dictionaries(
    {},
    optional={
        "model": upstream_text,
        "id": upstream_text,
        "extra_fields": st.fixed_dictionaries(
            {},
            optional={
                "provider": upstream_text,
                "cache_debug": st.fixed_dictionaries(
                    {"cache_hit": st.just(True), "hit_type": upstream_text}
                ),
            },
        ),
    },
)


def test_hostile_values_from_the_upstream_are_recorded(gateway: Gateway) -> None:
    """The provider was paid: whatever the upstream names itself, the client gets its
    answer and the call has exactly one committed record (values made storable)."""

    @given(answer=upstream_answers, path=st.sampled_from(list(ROUTES)), stream=st.booleans())
    def case(
        runner: asyncio.Runner, app: GatewayApp, answer: dict[str, Any], path: str, stream: bool
    ) -> None:
        before = len(gateway.records())
        field, needs = ROUTES[path]
        body: dict[str, Any] = {"model": "openai/gpt-4o-mini", "sim": {"answer": answer}}
        body.update({field: PROMPTS[field], **needs})
        if stream and path != "/v1/embeddings":
            body["stream"] = True
        status, parsed, _ = runner.run(call(app, orjson.dumps(body), auth(gateway), path))
        assert status == 200, (status, parsed)
        records = gateway.records()
        assert len(records) == before + 1
        record = records[-1]
        for column, limit in (("model", 300), ("provider", 100), ("response_id", 200),
                              ("cache_hit_type", 32)):  # fmt: skip
            value = record[column]
            assert value is None or (len(value) <= limit and not has_control(value)), column

    run_fuzz(gateway, case)


def test_an_upstream_model_name_is_cut_visibly_and_cleaned(gateway: Gateway) -> None:
    with asyncio.Runner() as runner:
        app = gateway.app()
        try:
            answer = {"model": "gpt-4o\x00" + "y" * 1000, "id": "cmpl-\x1b[31m"}
            body = {"model": "openai/gpt-4o-mini", "prompt": "hi", "sim": {"answer": answer}}
            status, _, _ = runner.run(call(app, orjson.dumps(body), auth(gateway), PATH))
        finally:
            runner.run(app.shutdown())
    assert status == 200
    (record,) = gateway.records()
    assert record["model"] == "gpt-4o\ufffd" + "y" * 292 + "…"
    assert record["response_id"] == "cmpl-\ufffd[31m"
    # No price is known for that served name: marked unpriced (reprice can bill it later).
    assert record["provider"] == "openai" and record["cost_source"] == "unpriced"
