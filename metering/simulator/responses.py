"""``POST /v1/responses``, the OpenAI Responses API: an ``output`` list (web search
calls, then one assistant message), ``usage`` with input/output token details; streams
of typed events (``event:`` and ``data:`` lines, each with a ``sequence_number``)
ending in ``response.completed`` (or ``response.incomplete``/``response.failed``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from metering.simulator.completions import cache_debug
from metering.simulator.profiles import (
    PROFILES,
    Profile,
    answer_text,
    joined_text,
    output_split,
    prompt_tokens,
    reported_cost,
    search_count,
    text_pieces,
)
from metering.simulator.steering import (
    EventStream,
    State,
    bifrost_error,
    json_answer,
    misbehave,
    served_model,
    steer_answer,
    steering,
)

TERMINALS = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}


def input_text(body: Mapping[str, Any]) -> str:
    """The text of ``instructions`` and ``input`` (a string or a list of items)."""
    items = body.get("input")
    parts: list[object] = [body.get("instructions")]
    if isinstance(items, str):
        parts.append(items)
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                parts.append(item.get("content"))
                parts.append(item.get("output"))  # a function call's output
    return joined_text(parts)


def responses_usage(served: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic usage in the Responses form: input includes the cached tokens,
    output includes the reasoning tokens."""
    profile = PROFILES.get(served, Profile())
    input_tokens = prompt_tokens(input_text(body), profile)
    text, reasoning = output_split(profile, body.get("max_output_tokens"))
    output_tokens = text + reasoning
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": input_tokens * profile.cache_read_share // 100,
            "cache_write_tokens": profile.cache_write,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }
    if profile.reported_cost:
        searches = search_count(profile, body.get("tools"))
        usage["cost"] = reported_cost(served, input_tokens, output_tokens, searches)
    return usage


async def handle(state: State, request: web.Request, body: Any) -> web.StreamResponse:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return bifrost_error(400, "model is required")
    sim = steering(body)
    fault = await misbehave(sim, bifrost_error)
    if fault is not None:
        return fault
    served = served_model(body, sim, body["model"])
    if served is None:
        return bifrost_error(503, f"{body['model']} is unavailable and there is no fallback")
    terminal = str(sim.get("terminal", "response.completed"))
    if terminal not in TERMINALS:
        return bifrost_error(400, f"sim.terminal must be one of {', '.join(TERMINALS)}")
    whole = respond(state, body, sim, served, TERMINALS[terminal])
    if body.get("stream") is True:
        return await stream(state, request, sim, whole, terminal)
    await state.hold(sim)
    return json_answer(steer_answer(whole, sim))


def respond(
    state: State, body: Mapping[str, Any], sim: Mapping[str, Any], served: str, status: str
) -> dict[str, Any]:
    """The whole response in its final ``status`` (completed, incomplete or failed),
    before ``usage``/``answer`` steering."""
    profile = PROFILES.get(served, Profile())
    usage = responses_usage(served, body)
    n = state.next_id()
    provider, _, model = served.partition("/")
    words = input_text(body).split()
    query = " ".join(words[:6]) or "metering"
    output: list[dict[str, Any]] = [
        {
            "type": "web_search_call",
            "id": f"ws_sim-{n}-{k}",
            "status": "completed",
            "action": {"type": "search", "query": query if k == 0 else f"{query} {k + 1}"},
        }
        for k in range(search_count(profile, body.get("tools")))
    ]
    text = answer_text(0, output_split(profile, body.get("max_output_tokens"))[0])
    output.append(
        {
            "type": "message",
            "id": f"msg_sim-{n}",
            "status": "completed" if status == "completed" else "incomplete",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
    )
    extra: dict[str, Any] = {
        "request_type": "responses",
        "provider": provider,
        "model_requested": body["model"].partition("/")[2],
        "latency": 3,
    }
    if sim.get("cache"):
        extra["cache_debug"] = cache_debug(state, sim, served, usage["input_tokens"])
    tools = body.get("tools")
    answer: dict[str, Any] = {
        "id": f"resp_sim-{n}",
        "object": "response",
        "created_at": 1_700_000_000,
        "completed_at": 1_700_000_001 if status == "completed" else None,
        "status": status,
        "background": False,
        "error": (
            {"code": "server_error", "message": "simulated failure while generating"}
            if status == "failed"
            else None
        ),
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": tools if isinstance(tools, list) else [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "extra_fields": extra,
    }
    return answer


async def stream(
    state: State,
    request: web.Request,
    sim: Mapping[str, Any],
    whole: dict[str, Any],
    terminal: str,
) -> web.StreamResponse:
    events = EventStream(request, sim)
    await events.open()
    sequence = 0

    async def send(event: dict[str, Any]) -> None:
        nonlocal sequence
        await events.send(event["type"], {**event, "sequence_number": sequence})
        sequence += 1

    started = {**whole, "status": "in_progress", "output": [], "usage": None}
    started |= {"completed_at": None, "error": None, "incomplete_details": None}
    await send({"type": "response.created", "response": started})
    await send({"type": "response.in_progress", "response": started})
    *searches, message = whole["output"]
    for index, call in enumerate(searches):
        pending = {**call, "status": "in_progress"}
        await send({"type": "response.output_item.added", "output_index": index, "item": pending})
        for step in ("in_progress", "searching", "completed"):
            kind = f"response.web_search_call.{step}"
            await send({"type": kind, "output_index": index, "item_id": call["id"]})
        await send({"type": "response.output_item.done", "output_index": index, "item": call})
    index = len(searches)
    part = message["content"][0]
    at = {"output_index": index, "item_id": message["id"], "content_index": 0}
    pending = {**message, "status": "in_progress", "content": []}
    await send({"type": "response.output_item.added", "output_index": index, "item": pending})
    await send({"type": "response.content_part.added", **at, "part": {**part, "text": ""}})
    pieces = text_pieces(part["text"], int(sim.get("chunks", 4)))
    for number, piece in enumerate(pieces):
        if events.cut_before(number):
            return events.cut()
        if number == len(pieces) - 1:
            await state.hold(sim)
        await send({"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []})
    if events.cut_before():
        return events.cut()
    done = {"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []}
    await send(done)
    await send({"type": "response.content_part.done", **at, "part": part})
    await send({"type": "response.output_item.done", "output_index": index, "item": message})
    await send({"type": terminal, "response": steer_answer(dict(whole), sim)})
    return await events.close()
