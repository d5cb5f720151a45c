"""``POST /v1/completions`` and ``POST /v1/chat/completions`` in Bifrost's OpenAI shape:
choices, ``usage`` with prompt/completion details, ``extra_fields``; streams of
``data:`` chunks, the usage in a last chunk when ``stream_options.include_usage``,
then ``data: [DONE]``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from metering.simulator.profiles import (
    ANSWER_TOKENS,
    OVERHEAD_TOKENS,
    PROFILES,
    Profile,
    answer_text,
    reported_cost,
    text_tokens,
)
from metering.simulator.steering import (
    State,
    bifrost_error,
    json_answer,
    misbehave,
    served_model,
    steer_answer,
    steering,
)


def _prompts(body: Mapping[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [p for p in prompt if isinstance(p, str)] or [""]
    texts = [m.get("content") for m in body.get("messages") or () if isinstance(m, dict)]
    return ["".join(t for t in texts if isinstance(t, str))]


def make_usage(served: str, body: Mapping[str, Any], choices: int) -> dict[str, Any]:
    """Deterministic usage for a request served by ``served`` (provider/model)."""
    profile = PROFILES.get(served, Profile())
    prompt_tokens = (
        sum(OVERHEAD_TOKENS + text_tokens(p) for p in _prompts(body)) + profile.cache_write
    )
    max_tokens = body.get("max_tokens")
    per_choice = (
        max_tokens
        if isinstance(max_tokens, int) and 0 < max_tokens < ANSWER_TOKENS
        else ANSWER_TOKENS
    )
    reasoning = profile.reasoning * choices
    completion = per_choice * choices + reasoning
    cache_read = prompt_tokens * profile.cache_read_share // 100
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_details": {
            "text_tokens": prompt_tokens - cache_read - profile.cache_write,
            "cached_read_tokens": cache_read,
            "cached_write_tokens": profile.cache_write,
        },
        "completion_tokens": completion,
        "completion_tokens_details": {
            "text_tokens": completion - reasoning,
            "reasoning_tokens": reasoning,
            "citation_tokens": profile.citation,
            "num_search_queries": profile.search_queries,
        },
        "total_tokens": prompt_tokens + completion,
    }
    if profile.reported_cost:
        usage["cost"] = reported_cost(served, prompt_tokens, completion, profile.search_queries)
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
    chat = request.path.endswith("/chat/completions")
    if body.get("stream") is True:
        return await stream(state, request, body, sim, served, chat)
    await state.hold(sim)
    return json_answer(respond(state, body, sim, served, chat))


def respond(
    state: State, body: Mapping[str, Any], sim: Mapping[str, Any], served: str, chat: bool
) -> dict[str, Any]:
    n_field = body.get("n")
    n = n_field if isinstance(n_field, int) else 1
    prompts = 1 if chat else len(_prompts(body))
    count = max(n, 1) * prompts
    usage = make_usage(served, body, count)
    per_choice = usage["completion_tokens_details"]["text_tokens"] // count
    provider, _, model = served.partition("/")
    choices = []
    for i in range(count):
        text = answer_text(i, per_choice)
        choice: dict[str, Any] = {"index": i, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
            choice["logprobs"] = None
        choices.append(choice)
    extra: dict[str, Any] = {
        "request_type": "chat_completion" if chat else "text_completion",
        "provider": provider,
        "model_requested": body["model"].partition("/")[2],
        "latency": 3,
    }
    if sim.get("cache"):
        extra["cache_debug"] = cache_debug(state, sim, served, usage["prompt_tokens"])
    answer: dict[str, Any] = {
        "id": f"cmpl-sim-{state.next_id()}",
        "object": "chat.completion" if chat else "text_completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": choices,
        "usage": usage,
        "extra_fields": extra,
    }
    steer_answer(answer, sim)
    return answer


def cache_debug(state: State, sim: Mapping[str, Any], served: str, tokens: int) -> dict[str, Any]:
    """``extra_fields.cache_debug`` of an answer served from the gateway's cache."""
    provider, _, model = served.partition("/")
    return {
        "cache_hit": True,
        "cache_id": f"cache-{state.next_id()}",
        "hit_type": str(sim["cache"]),
        "provider_used": provider,
        "model_used": model,
        "input_tokens": tokens,
    }


async def stream(
    state: State,
    request: web.Request,
    body: Mapping[str, Any],
    sim: Mapping[str, Any],
    served: str,
    chat: bool,
) -> web.StreamResponse:
    whole = respond(state, {**body, "n": 1}, sim, served, chat)
    usage = whole.get("usage")
    content = whole["choices"][0]["message" if chat else "text"]
    text = content["content"] if chat else content
    n_chunks = max(int(sim.get("chunks", 4)), 1)
    words = text.split(" ")
    size = -(-len(words) // n_chunks)
    pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    base = {k: whole[k] for k in ("id", "created", "model")}
    if isinstance(sim.get("answer"), dict):
        base.update(sim["answer"])
    base["object"] = "chat.completion.chunk" if chat else "text_completion"
    for index, piece in enumerate(pieces):
        if sim.get("cut_after") is not None and index >= int(sim["cut_after"]):
            assert request.transport is not None
            request.transport.close()  # a cut stream: no usage, no [DONE]
            return response
        if sim.get("stall_after") is not None and index == int(sim["stall_after"]):
            await asyncio.sleep(float(sim.get("stall", 1)))  # not money: seconds
        if index == len(pieces) - 1:
            await state.hold(sim)
        last = index == len(pieces) - 1
        delta = {"content": piece} if chat else None
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop" if last else None}
        choice.update({"delta": delta} if chat else {"text": piece})
        chunk = {
            "extra_fields": {**whole["extra_fields"], "chunk_index": index},
            **base,
            "choices": [choice],
        }
        event = b"data: " + orjson.dumps(chunk) + b"\n\n"
        if sim.get("cut_mid_chunk") is not None and index == int(sim["cut_mid_chunk"]):
            await response.write(event[: len(event) // 2])
            assert request.transport is not None
            request.transport.close()  # the connection breaks inside an event
            return response
        await response.write(event)
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") and usage is not None:
        final = {"extra_fields": whole["extra_fields"], **base, "choices": [], "usage": usage}
        await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
