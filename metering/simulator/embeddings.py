"""``POST /v1/embeddings``: one deterministic vector per input, as floats or as base64
little-endian float32 (what the OpenAI SDK asks for by default); ``usage`` counts the
input tokens only."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from aiohttp import web

from metering.simulator.completions import cache_debug
from metering.simulator.profiles import text_tokens
from metering.simulator.steering import (
    State,
    bifrost_error,
    json_answer,
    misbehave,
    served_model,
    steer_answer,
    steering,
)

DEFAULT_DIMENSIONS = 8


def embedding_inputs(value: object) -> list[str | list[int]] | None:
    """The inputs of a request: a string, strings, one token array or token arrays
    (None when ``input`` is none of these)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(_is_tokens(v) for v in value):
        return [list(v) for v in value]
    if _is_tokens(value):
        return [list(value)]
    return None


def _is_tokens(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def input_tokens(item: str | list[int]) -> int:
    return text_tokens(item) if isinstance(item, str) else len(item)


def vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """Values in [-1, 1] that are multiples of 1/1024: exact in float32, so the float
    and the base64 answers decode to the same numbers."""
    seed = f"{model}\0{item}".encode()
    return [(zlib.crc32(b"%d\0%s" % (j, seed)) % 2049 - 1024) / 1024 for j in range(dimensions)]


def encoded(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


async def handle(state: State, request: web.Request, body: Any) -> web.StreamResponse:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return bifrost_error(400, "model is required")
    inputs = embedding_inputs(body.get("input"))
    if inputs is None:
        return bifrost_error(400, "input must be a string, strings or token arrays")
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        return bifrost_error(400, "dimensions must be a positive integer")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return bifrost_error(400, "encoding_format must be float or base64")
    sim = steering(body)
    fault = await misbehave(sim, bifrost_error)
    if fault is not None:
        return fault
    served = served_model(body, sim, body["model"])
    if served is None:
        return bifrost_error(503, f"{body['model']} is unavailable and there is no fallback")
    provider, _, model = served.partition("/")
    tokens = sum(input_tokens(item) for item in inputs)
    data = []
    for index, item in enumerate(inputs):
        values = vector(served, item, dimensions)
        embedding = encoded(values) if encoding == "base64" else values
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    extra: dict[str, Any] = {
        "request_type": "embedding",
        "provider": provider,
        "model_requested": body["model"].partition("/")[2],
        "latency": 3,
    }
    if sim.get("cache"):
        extra["cache_debug"] = cache_debug(state, sim, served, tokens)
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "extra_fields": extra,
    }
    await state.hold(sim)
    return json_answer(steer_answer(answer, sim))
