"""A response's ``usage`` object → non-overlapping token buckets.

Every token lands in exactly one priced bucket:

    prompt_tokens      = input_text + input_audio + input_image + cache_read + cache_write
                         + cache_write_1h
    completion_tokens  = output (text/audio/image, predictions) + reasoning
    citation_tokens    priced on their own (Perplexity reports them beside completion)
    search_queries     priced per query

Accepted shapes: Bifrost's (``prompt_tokens_details.cached_read_tokens`` /
``cached_write_tokens``), OpenAI's (``prompt_tokens_details.cached_tokens`` =
cache read), Anthropic-style top-level ``cache_read_input_tokens`` /
``cache_creation_input_tokens``; any detail may be absent or null.

Cache writes that live one hour are priced apart (Anthropic's 2× input rate, against
1.25× for the 5-minute write): ``prompt_tokens_details.cached_write_1h_tokens`` is the
1-hour part *of* ``cached_write_tokens``; Anthropic-style, it is
``cache_creation.ephemeral_1h_input_tokens``, part of ``cache_creation_input_tokens``.
``cache_write_1h`` holds that part, ``cache_write`` the other cache writes.

The totals contain their details (SPEC §5). When a cached (or reasoning, or 1-hour
write) count is larger than the total that should contain it, the detail is billed in
full and the rest of that total is zero, never negative (``UsageBuckets.totals_adjusted``
flags it). This keeps cost monotone in every count (a detail grown with its totals).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from metering.errors import UsageError

# No single response uses a billion tokens of one kind; a larger count is a broken
# upstream, and pricing it could overflow the 64-bit nano-USD columns.
MAX_TOKEN_COUNT = 10**9
MAX_SEARCH_QUERIES = 10_000  # in one response; with core.bounds, no record can overflow
# The estimate of text without usage (a cut stream, an interrupted call): ~4 characters a token.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` by the estimate (``CHARS_PER_TOKEN``), rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN) if text else 0


@dataclass(frozen=True, slots=True)
class UsageBuckets:
    # priced input buckets (disjoint, sum = prompt_tokens)
    input_text: int = 0
    input_audio: int = 0
    input_image: int = 0
    cache_read: int = 0
    cache_write: int = 0  # cache writes but the 1-hour ones (Anthropic's 5-minute writes)
    cache_write_1h: int = 0
    # priced output buckets (disjoint, sum = completion_tokens)
    output: int = 0
    output_audio: int = 0
    reasoning: int = 0
    # priced on their own
    citation: int = 0
    search_queries: int = 0
    # informational detail (already inside ``output``)
    output_image: int = 0
    accepted_prediction: int = 0
    rejected_prediction: int = 0
    totals_adjusted: bool = False

    @property
    def prompt_tokens(self) -> int:
        return (
            self.input_text
            + self.input_audio
            + self.input_image
            + self.cache_read
            + self.cache_write
            + self.cache_write_1h
        )

    @property
    def uncached_input(self) -> int:
        return self.input_text + self.input_audio + self.input_image

    @property
    def completion_tokens(self) -> int:
        return self.output + self.output_audio + self.reasoning

    @property
    def completion_text(self) -> int:
        return self.output - self.output_image

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int | bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _count(obj: Mapping[str, Any] | None, name: str, where: str) -> int:
    if obj is None:
        return 0
    value = obj.get(name)
    if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
        return value  # the usual case, checked in one step
    return _checked_count(value, name, where)


def _checked_count(value: Any, name: str, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise UsageError(f"usage {where}{name} must be a whole number of tokens, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise UsageError(f"usage {where}{name} must be a whole number of tokens, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise UsageError(f"usage {where}{name} must be a whole number of tokens, got {value!r}")
    if value < 0:
        raise UsageError(f"usage {where}{name} must not be negative, got {value}")
    if value > MAX_TOKEN_COUNT:
        raise UsageError(
            f"usage {where}{name} = {value} is implausible (more than {MAX_TOKEN_COUNT} "
            "tokens in one response)"
        )
    return value


def _details(usage: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = usage.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UsageError(f"usage.{name} must be an object, got {type(value).__name__}")
    return value


def normalize_usage(usage: Mapping[str, Any] | None) -> UsageBuckets:
    """Split a response ``usage`` object into disjoint, individually priced buckets."""
    if usage is None:
        return UsageBuckets()
    if not isinstance(usage, Mapping):
        raise UsageError(f"usage must be an object, got {type(usage).__name__}")
    pd = _details(usage, "prompt_tokens_details")
    cd = _details(usage, "completion_tokens_details")

    prompt = _count(usage, "prompt_tokens", "")
    completion = _count(usage, "completion_tokens", "")

    cache_read = _count(pd, "cached_read_tokens", "prompt_tokens_details.") or _count(
        pd, "cached_tokens", "prompt_tokens_details."
    )
    cache_read = cache_read or _count(usage, "cache_read_input_tokens", "")
    cache_write = _count(pd, "cached_write_tokens", "prompt_tokens_details.") or _count(
        usage, "cache_creation_input_tokens", ""
    )
    write_1h = _count(pd, "cached_write_1h_tokens", "prompt_tokens_details.") or _count(
        _details(usage, "cache_creation"), "ephemeral_1h_input_tokens", "cache_creation."
    )
    audio_in = _count(pd, "audio_tokens", "prompt_tokens_details.")
    image_in = _count(pd, "image_tokens", "prompt_tokens_details.")

    reasoning = _count(cd, "reasoning_tokens", "completion_tokens_details.")
    audio_out = _count(cd, "audio_tokens", "completion_tokens_details.")
    image_out = _count(cd, "image_tokens", "completion_tokens_details.")
    citation = _count(cd, "citation_tokens", "completion_tokens_details.") or _count(
        usage, "citation_tokens", ""
    )
    searches = _count(cd, "num_search_queries", "completion_tokens_details.") or _count(
        usage, "num_search_queries", ""
    )
    if searches > MAX_SEARCH_QUERIES:
        raise UsageError(
            f"usage num_search_queries = {searches} is implausible (more than "
            f"{MAX_SEARCH_QUERIES} in one response)"
        )
    accepted = _count(cd, "accepted_prediction_tokens", "completion_tokens_details.")
    rejected = _count(cd, "rejected_prediction_tokens", "completion_tokens_details.")

    # the 1-hour part of the writes: a part larger than the writes is billed in full
    other_writes = max(cache_write - write_1h, 0)
    cached = cache_read + other_writes + write_1h
    adjusted = cached > prompt or reasoning > completion or write_1h > cache_write
    uncached = max(prompt - cached, 0)
    audio_in = min(audio_in, uncached)
    image_in = min(image_in, uncached - audio_in)
    text_in = uncached - audio_in - image_in

    non_reasoning = max(completion - reasoning, 0)
    audio_out = min(audio_out, non_reasoning)
    output = non_reasoning - audio_out
    image_out = min(image_out, output)

    return UsageBuckets(
        input_text=text_in,
        input_audio=audio_in,
        input_image=image_in,
        cache_read=cache_read,
        cache_write=other_writes,
        cache_write_1h=write_1h,
        output=output,
        output_audio=audio_out,
        reasoning=reasoning,
        citation=citation,
        search_queries=searches,
        output_image=image_out,
        accepted_prediction=accepted,
        rejected_prediction=rejected,
        totals_adjusted=adjusted,
    )
