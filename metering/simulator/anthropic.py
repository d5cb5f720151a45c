"""``POST /anthropic/v1/messages`` and ``POST /v1/messages``, the Anthropic Messages API
as Bifrost's Anthropic-compatible route serves it: ``usage`` whose ``input_tokens``
exclude the cache reads and writes; streams of ``message_start`` … ``message_delta``
(cumulative usage) … ``message_stop``; errors as ``{"type": "error", "error": …}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from metering.simulator.profiles import (
    PROFILES,
    Profile,
    answer_text,
    joined_text,
    output_split,
    prompt_tokens,
    search_count,
    text_pieces,
)
from metering.simulator.steering import (
    EventStream,
    State,
    json_answer,
    misbehave,
    served_model,
    steer_answer,
    steering,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> web.Response:
    error = {"type": ERROR_TYPES.get(status, "api_error"), "message": message}
    body = orjson.dumps({"type": "error", "error": error})
    return web.Response(status=status, body=body, content_type="application/json")


def prompt_text(body: Mapping[str, Any]) -> str:
    """The text of ``system`` (a string or text blocks) and the messages' contents."""
    messages = [m.get("content") for m in body.get("messages") or () if isinstance(m, dict)]
    return joined_text([body.get("system"), *messages])


def messages_usage(served: str, body: Mapping[str, Any], sim: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic usage in Anthropic's form: ``input_tokens`` are the uncached ones."""
    profile = PROFILES.get(served, Profile())
    one_hour = int(sim.get("cache_1h", 0))
    write = max(profile.cache_write, one_hour)
    prompt = prompt_tokens(prompt_text(body), profile) - profile.cache_write + write
    read = prompt * profile.cache_read_share // 100
    text, reasoning = output_split(profile, body.get("max_tokens"))
    usage: dict[str, Any] = {
        "input_tokens": prompt - read - write,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write - one_hour,
            "ephemeral_1h_input_tokens": one_hour,
        },
        "output_tokens": text + reasoning,
    }
    searches = search_count(profile, body.get("tools"))
    if searches:
        usage["server_tool_use"] = {"web_search_requests": searches, "web_fetch_requests": 0}
    return usage


async def handle(state: State, request: web.Request, body: Any) -> web.StreamResponse:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return anthropic_error(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return anthropic_error(400, "max_tokens: Field required (a positive integer)")
    sim = steering(body)
    fault = await misbehave(sim, anthropic_error)
    if fault is not None:
        return fault
    requested = body["model"] if "/" in body["model"] else f"anthropic/{body['model']}"
    served = served_model(body, sim, requested)
    if served is None:
        return anthropic_error(503, f"{requested} is unavailable and there is no fallback")
    usage = messages_usage(served, body, sim)
    text, _ = output_split(PROFILES.get(served, Profile()), max_tokens)
    message: dict[str, Any] = {
        "id": f"msg_sim-{state.next_id()}",
        "type": "message",
        "role": "assistant",
        "model": served.partition("/")[2],
        "content": [{"type": "text", "text": answer_text(0, text)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if body.get("stream") is True:
        return await stream(state, request, sim, message)
    await state.hold(sim)
    return json_answer(steer_answer(message, sim))


async def stream(
    state: State, request: web.Request, sim: Mapping[str, Any], message: dict[str, Any]
) -> web.StreamResponse:
    events = EventStream(request, sim)
    await events.open()

    async def send(event: dict[str, Any]) -> None:
        await events.send(event["type"], event)

    usage = message["usage"]
    start_usage: dict[str, Any] | None = {**usage, "output_tokens": 1}
    if sim.get("start_input") is not None:
        start_usage = {**usage, "output_tokens": 1, "input_tokens": int(sim["start_input"])}
    delta_usage: dict[str, Any] | None = {"output_tokens": usage["output_tokens"]}
    if sim.get("delta_usage") == "full":
        delta_usage = {k: v for k, v in usage.items() if k != "cache_creation"}
    if "usage" in sim:  # a faulty upstream: its own usage in both events, or none
        start_usage = delta_usage = sim["usage"]
    started = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    if isinstance(sim.get("answer"), dict):
        started.update(sim["answer"])
    if start_usage is None:
        del started["usage"]
    await send({"type": "message_start", "message": started})
    block = {"type": "text", "text": ""}
    await send({"type": "content_block_start", "index": 0, "content_block": block})
    await send({"type": "ping"})
    pieces = text_pieces(message["content"][0]["text"], int(sim.get("chunks", 4)))
    for number, piece in enumerate(pieces):
        if events.cut_before(number):
            return events.cut()
        if number == len(pieces) - 1:
            await state.hold(sim)
        delta = {"type": "text_delta", "text": piece}
        await send({"type": "content_block_delta", "index": 0, "delta": delta})
    if events.cut_before():
        return events.cut()
    await send({"type": "content_block_stop", "index": 0})
    final: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": delta_usage,
    }
    if delta_usage is None:
        del final["usage"]
    await send(final)
    await send({"type": "message_stop"})
    return await events.close()
