"""``GET /v1/requests/{id}``: a caller's own record — its settled usage and per-component
cost — authenticated by the same virtual key that made the request (another key's
request is 404, as an unknown one). A record exists once its call has ended and settled
(a stream's too); until then the answer is 404 too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from metering.core.attribution import tags_of
from metering.core.components import COMPONENT_COLUMNS, COMPONENTS
from metering.core.money import format_usd
from metering.core.records import UsageRow

TOKEN_FIELDS = (
    "prompt_tokens",
    "prompt_text_tokens",
    "prompt_audio_tokens",
    "prompt_image_tokens",
    "cached_read_tokens",
    "cached_write_tokens",
    "cached_write_1h_tokens",
    "completion_tokens",
    "completion_text_tokens",
    "completion_audio_tokens",
    "completion_image_tokens",
    "accepted_prediction_tokens",
    "rejected_prediction_tokens",
    "reasoning_tokens",
    "citation_tokens",
    "search_queries",
    "total_tokens",
)


def _utc(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def _usd(nano: int | None) -> str | None:
    return None if nano is None else format_usd(nano)


def record_payload(row: UsageRow) -> dict[str, Any]:
    """The JSON answer for one record: amounts as decimal USD strings, times in UTC."""
    costs = {name: format_usd(getattr(row, column)) for name, column in
             zip(COMPONENTS, COMPONENT_COLUMNS, strict=True)}  # fmt: skip
    return {
        "request_id": row.request_id,
        "response_id": row.response_id,
        "started_at": _utc(row.started_at),
        "ended_at": _utc(row.ended_at),
        "request_type": row.request_type,
        "requested_model": row.requested_model,
        "provider": row.provider,
        "model": row.model,
        "stream": row.stream,
        "status": row.status,
        "http_status": row.http_status,
        "usage": {name: getattr(row, name) for name in TOKEN_FIELDS},
        "usage_estimated": row.usage_estimated,
        "cost": {
            **costs,
            "adjustment": format_usd(row.adjustment_cost),
            "total": format_usd(row.total_cost),
        },
        "computed_cost": _usd(row.computed_cost),
        "reported_cost": _usd(row.reported_cost),
        "cost_source": row.cost_source,
        "currency": "USD",
        "end_user": row.end_user,  # README, Attribution
        "tags": list(tags_of(row.tags)),
    }
