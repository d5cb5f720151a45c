"""Usage buckets and a bill → the token and cost columns of a usage record (pure).

A record is built as a row (``record_row``: a tuple in ``RECORD_FIELDS`` order, what the
storage layer inserts as is) or as a dict of the same values (``record_values``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import attrgetter
from typing import Any

from metering.core.billing import Bill
from metering.core.components import COMPONENT_COLUMNS, COMPONENTS
from metering.core.responses import ResponseFacts
from metering.core.storable import storable, storable_or_none
from metering.core.usage import UsageBuckets

component_amounts = attrgetter(*COMPONENTS)  # a CostBreakdown's amounts, in column order

# Lengths of the text columns whose values the upstream chooses (``storage.models`` uses
# them): ``record_row`` makes those values fit (``core.storable``).
RESPONSE_ID_CHARS = 200
PROVIDER_CHARS = 100
MODEL_CHARS = 300
REQUESTED_MODEL_CHARS = 400
CACHE_HIT_TYPE_CHARS = 32
ERROR_MESSAGE_CHARS = 2000  # a TEXT column: the cap keeps a huge upstream error text out

# Every column of a usage record but its id, in the order of ``record_row``'s values.
RECORD_FIELDS = (
    "request_id",
    "response_id",
    "started_at",
    "ended_at",
    "key_id",
    "team_id",
    "customer_id",
    "provider",
    "model",
    "requested_model",
    "request_type",
    "stream",
    "status",
    "http_status",
    "latency_ms",
    "cache_hit",
    "cache_hit_type",
    # tokens
    "prompt_tokens",
    "prompt_text_tokens",
    "prompt_audio_tokens",
    "prompt_image_tokens",
    "cached_read_tokens",
    "cached_write_tokens",
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
    # nano-USD: the components (core.components), then the adjustment and the totals
    *COMPONENT_COLUMNS,
    "adjustment_cost",
    "total_cost",
    "computed_cost",
    "reported_cost",
    "cost_source",
    "price_version_id",
    "error_message",
    "usage_estimated",
)


def token_columns(usage: UsageBuckets) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "prompt_text_tokens": usage.input_text,
        "prompt_audio_tokens": usage.input_audio,
        "prompt_image_tokens": usage.input_image,
        "cached_read_tokens": usage.cache_read,
        "cached_write_tokens": usage.cache_write,
        "completion_tokens": usage.completion_tokens,
        "completion_text_tokens": usage.completion_text,
        "completion_audio_tokens": usage.output_audio,
        "completion_image_tokens": usage.output_image,
        "accepted_prediction_tokens": usage.accepted_prediction,
        "rejected_prediction_tokens": usage.rejected_prediction,
        "reasoning_tokens": usage.reasoning,
        "citation_tokens": usage.citation,
        "search_queries": usage.search_queries,
        "total_tokens": usage.total_tokens,
    }


def cost_columns(bill: Bill) -> dict[str, int | str | None]:
    return {
        **dict(zip(COMPONENT_COLUMNS, component_amounts(bill.components), strict=True)),
        "adjustment_cost": bill.adjustment,
        "total_cost": bill.total,
        "computed_cost": bill.computed_total,
        "reported_cost": bill.reported_total,
        "cost_source": bill.cost_source,
        "price_version_id": bill.price_version_id,
        "usage_estimated": bill.estimated,
    }


def record_row(
    *,
    request_id: str,
    started_at: datetime,
    ended_at: datetime,
    key_id: int,
    team_id: int | None,
    customer_id: int | None,
    requested_model: str,
    request_type: str,
    stream: bool,
    status: str,
    http_status: int | None,
    latency_ms: int | None,
    facts: ResponseFacts,
    bill: Bill,
    error_message: str | None = None,
) -> tuple[Any, ...]:
    """Every column of a usage_records row, in ``RECORD_FIELDS`` order (naive-UTC
    timestamps, nano-USD amounts). Spelt out rather than built from ``token_columns``
    and ``cost_columns``: ``metering ingest`` builds one per line."""
    u = facts.usage
    c = bill.components
    prompt = u.input_text + u.input_audio + u.input_image + u.cache_read + u.cache_write
    completion = u.output + u.output_audio + u.reasoning
    return (
        request_id,
        # What the upstream chose is made storable here, the one boundary for the gateway
        # and ingest: a strange answer can never make the record of a paid call unwritable.
        storable_or_none(facts.response_id, RESPONSE_ID_CHARS),
        started_at,
        ended_at,
        key_id,
        team_id,
        customer_id,
        storable(facts.provider, PROVIDER_CHARS),
        storable(facts.model, MODEL_CHARS),
        requested_model,
        request_type,
        stream,
        status,
        http_status,
        latency_ms,
        facts.cache_hit_type is not None,
        storable_or_none(facts.cache_hit_type, CACHE_HIT_TYPE_CHARS),
        prompt,
        u.input_text,
        u.input_audio,
        u.input_image,
        u.cache_read,
        u.cache_write,
        completion,
        u.output - u.output_image,
        u.output_audio,
        u.output_image,
        u.accepted_prediction,
        u.rejected_prediction,
        u.reasoning,
        u.citation,
        u.search_queries,
        prompt + completion,
        *component_amounts(c),
        bill.adjustment,
        c.total + bill.adjustment,
        bill.computed_total,
        bill.reported_total,
        bill.cost_source,
        bill.price_version_id,
        storable_or_none(error_message, ERROR_MESSAGE_CHARS),
        bill.estimated,
    )


def record_values(
    *,
    request_id: str,
    started_at: datetime,
    ended_at: datetime,
    key_id: int,
    team_id: int | None,
    customer_id: int | None,
    requested_model: str,
    request_type: str,
    stream: bool,
    status: str,
    http_status: int | None,
    latency_ms: int | None,
    facts: ResponseFacts,
    bill: Bill,
    error_message: str | None = None,
) -> dict[str, Any]:
    """``record_row`` as a dict of column name → value."""
    row = record_row(
        request_id=request_id,
        started_at=started_at,
        ended_at=ended_at,
        key_id=key_id,
        team_id=team_id,
        customer_id=customer_id,
        requested_model=requested_model,
        request_type=request_type,
        stream=stream,
        status=status,
        http_status=http_status,
        latency_ms=latency_ms,
        facts=facts,
        bill=bill,
        error_message=error_message,
    )
    return dict(zip(RECORD_FIELDS, row, strict=True))


def buckets_from_record(row: Mapping[str, Any]) -> UsageBuckets:
    """The priced buckets stored on a record (for repricing without the response)."""
    return UsageBuckets(
        input_text=row["prompt_text_tokens"],
        input_audio=row["prompt_audio_tokens"],
        input_image=row["prompt_image_tokens"],
        cache_read=row["cached_read_tokens"],
        cache_write=row["cached_write_tokens"],
        output=row["completion_text_tokens"] + row["completion_image_tokens"],
        output_audio=row["completion_audio_tokens"],
        reasoning=row["reasoning_tokens"],
        citation=row["citation_tokens"],
        search_queries=row["search_queries"],
        output_image=row["completion_image_tokens"],
        accepted_prediction=row["accepted_prediction_tokens"],
        rejected_prediction=row["rejected_prediction_tokens"],
    )
