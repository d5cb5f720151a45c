"""``GET /v1/models``: every simulated model, named provider/model as Bifrost lists them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metering.simulator.profiles import EMBEDDING_MODELS, PROFILES
from metering.simulator.steering import State, json_answer


def model_list() -> dict[str, Any]:
    data = [
        {
            "id": name,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": name.partition("/")[0],
        }
        for name in (*PROFILES, *EMBEDDING_MODELS)
    ]
    return {"object": "list", "data": data}


async def handle(state: State, request: web.Request, body: Any) -> web.StreamResponse:
    return json_answer(model_list())
