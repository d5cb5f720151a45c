"""``GET /v1/models``: the upstream's model list, filtered to what the calling key may use.

A model listed without a provider prefix is matched as ``owned_by/id``. Listing models
costs nothing upstream, so it is neither reserved nor recorded (README, HTTP routes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from metering.errors import UpstreamError, UpstreamTimeout
from metering.gateway.auth import model_allowed
from metering.gateway.responses import Refused
from metering.gateway.upstream import UpstreamClient
from metering.storage.keys import KeyInfo

PATH = "/v1/models"


def model_name(item: Mapping[str, Any]) -> str | None:
    """``provider/model`` of a listed model (None: not a usable entry)."""
    model_id = item.get("id")
    if not isinstance(model_id, str) or not model_id:
        return None
    owner = item.get("owned_by")
    if "/" not in model_id and isinstance(owner, str) and owner:
        return f"{owner}/{model_id}"
    return model_id


def allowed_models(listing: Mapping[str, Any], key: KeyInfo) -> dict[str, Any]:
    """The listing with only the models ``key`` may use (the other fields kept)."""
    data = listing.get("data")
    items = data if isinstance(data, list) else []
    kept = [
        item
        for item in items
        if isinstance(item, Mapping)
        and (name := model_name(item)) is not None
        and model_allowed(key, name)
    ]
    return {**listing, "object": listing.get("object", "list"), "data": kept}


async def list_models(upstream: UpstreamClient, key: KeyInfo) -> tuple[int, bytes, str]:
    """(status, body, content type) for the client: the filtered list, or the upstream's
    own error passed through; Refused (502/504) when it cannot be had."""
    try:
        async with upstream.get(PATH) as response:
            status, ctype, raw = response.status, response.content_type, await response.read()
    except UpstreamTimeout as exc:
        raise Refused(504, "upstream_timeout", str(exc)) from None
    except UpstreamError as exc:
        raise Refused(502, "upstream_error", str(exc)) from None
    if status >= 400:
        return status, raw, ctype
    try:
        listing = orjson.loads(raw)
    except orjson.JSONDecodeError:
        listing = None
    if not isinstance(listing, dict):
        raise Refused(502, "upstream_error", "the upstream's model list is not a JSON object")
    return status, orjson.dumps(allowed_models(listing, key)), "application/json"
