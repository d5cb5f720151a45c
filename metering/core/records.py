"""Usage buckets and a bill → a usage record (pure).

A usage record is one typed, immutable value, ``UsageRow``: its fields are the columns
of ``usage_records`` (but the id), in table order. ``record_row`` builds it from what the
gateway or ``metering ingest`` knows of a call; nothing else spells its columns out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

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


class UsageRow(NamedTuple):
    """A usage record: every column of ``usage_records`` but its id, in table order
    (naive-UTC timestamps, nano-USD amounts). Immutable; built by ``record_row``, inserted
    by ``storage.ledger`` as it is (a tuple), journaled by name (``_asdict``). The cost
    columns are ``core.components.COMPONENT_COLUMNS`` in order (a test keeps them so)."""

    request_id: str
    response_id: str | None
    started_at: datetime
    ended_at: datetime
    key_id: int
    team_id: int | None
    customer_id: int | None
    provider: str
    model: str
    requested_model: str
    request_type: str
    stream: bool
    status: str
    http_status: int | None
    latency_ms: int | None
    cache_hit: bool
    cache_hit_type: str | None
    # tokens
    prompt_tokens: int
    prompt_text_tokens: int
    prompt_audio_tokens: int
    prompt_image_tokens: int
    cached_read_tokens: int
    cached_write_tokens: int  # every cache write, the 1-hour ones included
    cached_write_1h_tokens: int  # the 1-hour part of cached_write_tokens
    completion_tokens: int
    completion_text_tokens: int
    completion_audio_tokens: int
    completion_image_tokens: int
    accepted_prediction_tokens: int
    rejected_prediction_tokens: int
    reasoning_tokens: int
    citation_tokens: int
    search_queries: int
    total_tokens: int
    # nano-USD: the components (core.components), then the adjustment and the totals
    input_cost: int
    cache_read_cost: int
    cache_write_cost: int
    output_cost: int
    reasoning_cost: int
    citation_cost: int
    search_cost: int
    request_cost: int
    adjustment_cost: int
    total_cost: int
    computed_cost: int | None
    reported_cost: int | None
    cost_source: str
    price_version_id: int | None
    error_message: str | None
    usage_estimated: bool
    # attribution (``core.attribution``): None when the request had none
    end_user: str | None = None
    end_user_scope: str | None = None
    tags: str | None = None  # sorted, comma-joined (``core.attribution.tags_text``)

    @classmethod
    def from_mapping(cls, values: Mapping[Any, Any]) -> UsageRow:
        """The record held by a mapping of at least its columns (a row read back)."""
        return cls._make(values[name] for name in RECORD_FIELDS)


RECORD_FIELDS: tuple[str, ...] = UsageRow._fields


def cost_columns(bill: Bill) -> dict[str, Any]:
    """The cost columns of a record billed ``bill`` (``UsageRow._replace(**…)``)."""
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
    end_user: str | None = None,
    end_user_scope: str | None = None,
    tags: str | None = None,
) -> UsageRow:
    """The usage record of a call (naive-UTC timestamps, nano-USD amounts). Positional,
    in field order: ``metering ingest`` builds one per line."""
    u = facts.usage
    c = bill.components
    writes = u.cache_write + u.cache_write_1h
    prompt = u.input_text + u.input_audio + u.input_image + u.cache_read + writes
    completion = u.output + u.output_audio + u.reasoning
    return UsageRow(
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
        writes,
        u.cache_write_1h,
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
        # the components, in ``core.components`` order (a test keeps the two in step)
        c.input,
        c.cache_read,
        c.cache_write,
        c.output,
        c.reasoning,
        c.citation,
        c.search,
        c.request,
        bill.adjustment,
        c.total + bill.adjustment,
        bill.computed_total,
        bill.reported_total,
        bill.cost_source,
        bill.price_version_id,
        storable_or_none(error_message, ERROR_MESSAGE_CHARS),
        bill.estimated,
        end_user,  # checked at admission (``core.attribution``)
        end_user_scope,
        tags,
    )


def buckets_from_record(row: UsageRow) -> UsageBuckets:
    """The priced buckets stored on a record (for repricing without the response)."""
    return UsageBuckets(
        input_text=row.prompt_text_tokens,
        input_audio=row.prompt_audio_tokens,
        input_image=row.prompt_image_tokens,
        cache_read=row.cached_read_tokens,
        cache_write=row.cached_write_tokens - row.cached_write_1h_tokens,
        cache_write_1h=row.cached_write_1h_tokens,
        output=row.completion_text_tokens + row.completion_image_tokens,
        output_audio=row.completion_audio_tokens,
        reasoning=row.reasoning_tokens,
        citation=row.citation_tokens,
        search_queries=row.search_queries,
        output_image=row.completion_image_tokens,
        accepted_prediction=row.accepted_prediction_tokens,
        rejected_prediction=row.rejected_prediction_tokens,
    )
