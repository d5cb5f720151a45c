"""Usage buckets and a bill → the token and cost columns of a usage record (pure)."""

from __future__ import annotations

from metering.core.billing import Bill
from metering.core.usage import UsageBuckets


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
    c = bill.components
    return {
        "input_cost": c.input,
        "cache_read_cost": c.cache_read,
        "cache_write_cost": c.cache_write,
        "output_cost": c.output,
        "reasoning_cost": c.reasoning,
        "citation_cost": c.citation,
        "search_cost": c.search,
        "request_cost": c.request,
        "adjustment_cost": bill.adjustment,
        "total_cost": bill.total,
        "computed_cost": bill.computed_total,
        "reported_cost": bill.reported_total,
        "cost_source": bill.cost_source,
        "price_version_id": bill.price_version_id,
    }
