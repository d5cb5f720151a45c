"""Budget decisions (pure): how much a request may cost at most, and whether it fits.

Worst case of a request (what is reserved before the upstream call)
    prompt tokens   ≤ the UTF-8 size of the request body re-serialised as JSON
                      (every byte-level BPE or byte-fallback tokenizer emits at most one
                      token per byte; JSON escaping only adds bytes) plus
                      ``PROMPT_OVERHEAD_TOKENS`` special/template tokens per prompt,
                      capped by the model's ``max_input_tokens`` per prompt. Images,
                      audio or files in a chat request are not bounded by their size:
                      the prompt bound is then the model's context window.
    output tokens   = ``max_tokens`` (or ``max_completion_tokens``; the larger if both)
                      × max(``n``, ``best_of``, 1) × number of prompts; the model's
                      ``max_output_tokens`` stands in for an absent ``max_tokens``.
                      Reasoning, audio and image output are completion tokens too.
    citation tokens ≤ the model's context window per prompt × choices, and
    search queries  ≤ ``search_queries_bound`` per prompt × choices — nothing in a
                      request bounds these; they count only where the sheet prices them.
                      ``search_queries_bound_for(model)``: 1 per generation (what
                      search-augmented models such as sonar or gpt-4o-search run),
                      ``DEEP_RESEARCH_SEARCH_QUERIES`` for agentic ``*deep-research*``
                      models. An assumption, not a guarantee.
    the request     its fixed price, once.

Each bucket is priced at the highest rate it can be billed at: every input-class rate
(input, cache read, cache write and 1-hour cache write, audio, image) for the prompt,
every output-class rate (output, reasoning, audio) for the completion, over the base
rates and every long-context tier the prompt bound can reach. ``ROUNDING_SLACK_NANO``
covers the per-component rounding of the real bill. The bound is therefore ≥ the
computed cost of any response that honours ``max_tokens``; a cost *reported* by the
upstream that exceeds our own computation is outside that guarantee.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from metering.core.components import rates_of
from metering.core.money import format_usd
from metering.core.pricing import PriceVersion, Rates, price_usage
from metering.core.usage import UsageBuckets
from metering.errors import InvalidInput, UnboundedRequest

PROMPT_OVERHEAD_TOKENS = 512  # special tokens, chat templates, hidden tool-use preambles
DEFAULT_SEARCH_QUERIES_BOUND = 1
DEEP_RESEARCH_SEARCH_QUERIES = 50
ROUNDING_SLACK_NANO = 16  # > half a nano-USD for each of the 12 rounded terms of a bill

_INPUT_RATES = rates_of("input")  # every rate a prompt token may pay
_OUTPUT_RATES = rates_of("output")
_OTHER_RATES = rates_of("other")  # each bounded by itself


@dataclass(frozen=True, slots=True)
class RequestShape:
    """What bounds a request's usage; built from the body by ``shape_of_request``."""

    prompt_bytes: int
    prompts: int = 1
    max_tokens: int | None = None
    choices: int = 1
    non_text_input: bool = False


def _count_field(body: Mapping[str, Any], name: str, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _prompt_count(prompt: Any) -> int:
    if prompt is None or isinstance(prompt, str):
        return 1
    if isinstance(prompt, list):
        if prompt and all(isinstance(p, str | list) for p in prompt):
            return len(prompt)  # a batch: list of strings or of token-id lists
        return 1  # one prompt given as token ids (or empty)
    raise InvalidInput("prompt must be a string, a list of strings or a list of token ids")


def _has_non_text(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            for part in content:
                if not (isinstance(part, Mapping) and part.get("type") in ("text", None)):
                    return True
        if isinstance(message, Mapping) and message.get("audio") is not None:
            return True
    return False


def _generations(body: Mapping[str, Any]) -> tuple[int | None, int, int]:
    """(``max_tokens`` or None, choices, prompts) of a body."""
    limits = [
        v
        for name in ("max_tokens", "max_completion_tokens")
        if (v := _count_field(body, name, minimum=0)) is not None
    ]
    n = _count_field(body, "n", minimum=1) or 1
    best_of = _count_field(body, "best_of", minimum=1) or 1
    prompts = 1 if "messages" in body else _prompt_count(body.get("prompt"))
    return (max(limits) if limits else None), max(n, best_of, 1), prompts


def shape_of_request(body: Mapping[str, Any]) -> RequestShape:
    """The usage bounds of a ``/v1/completions`` or ``/v1/chat/completions`` body."""
    max_tokens, choices, prompts = _generations(body)
    is_chat = "messages" in body
    return RequestShape(
        prompt_bytes=len(json.dumps(body, ensure_ascii=True, default=str).encode("utf-8")),
        prompts=prompts,
        max_tokens=max_tokens,
        choices=choices,
        non_text_input=is_chat and _has_non_text(body.get("messages")),
    )


def output_tokens_bound(body: Mapping[str, Any], *, max_output_tokens: int | None) -> int | None:
    """The most output tokens a request may be billed: ``max_tokens`` (the model's
    ``max_output_tokens`` when absent) × max(``n``, ``best_of``, 1) × prompts, as in the
    worst case; None when neither limit is known. Cheap (no re-serialisation)."""
    max_tokens, choices, prompts = _generations(body)
    per_generation = max_tokens if max_tokens is not None else max_output_tokens
    return None if per_generation is None else per_generation * choices * prompts


def search_queries_bound_for(model: str) -> int:
    """Searches one generation of ``model`` may bill (see the module doc)."""
    if "deep-research" in model.lower():
        return DEEP_RESEARCH_SEARCH_QUERIES
    return DEFAULT_SEARCH_QUERIES_BOUND


def _max_rates(version: PriceVersion, prompt_tokens: int) -> Rates:
    """Per class, the highest rate over the base rates and every tier the prompt can reach."""
    reachable = [0] + [
        t.above_prompt_tokens + 1 for t in version.tiers if t.above_prompt_tokens < prompt_tokens
    ]
    candidates = [version.rates_for(p) for p in reachable]

    def top(names: Sequence[str]) -> Decimal:
        return max(getattr(r, n) or Decimal(0) for r in candidates for n in names)

    max_in, max_out = top(_INPUT_RATES), top(_OUTPUT_RATES)
    return Rates(
        **dict.fromkeys(_INPUT_RATES, max_in),
        **dict.fromkeys(_OUTPUT_RATES, max_out),
        **{name: top((name,)) for name in _OTHER_RATES},
    )


def worst_case_usage(
    shape: RequestShape,
    version: PriceVersion,
    *,
    search_queries_bound: int = DEFAULT_SEARCH_QUERIES_BOUND,
) -> UsageBuckets:
    """The largest usage the upstream can bill for this request (see the module doc)."""
    window = version.max_input_tokens
    if shape.non_text_input:
        if window is None:
            raise UnboundedRequest(
                f"{version.key} has no known context window, so a request with images, "
                "audio or files cannot be bounded for its budget; send text only"
            )
        prompt = window * shape.prompts
    else:
        prompt = shape.prompt_bytes + PROMPT_OVERHEAD_TOKENS * shape.prompts
        if window is not None:
            prompt = min(prompt, window * shape.prompts)
    per_prompt = shape.max_tokens if shape.max_tokens is not None else version.max_output_tokens
    if per_prompt is None:
        raise UnboundedRequest(
            f"{version.key} has no known max output tokens: set max_tokens so the request's "
            "cost can be bounded for its budget"
        )
    generations = shape.choices * shape.prompts
    citation_window = window if window is not None else prompt
    return UsageBuckets(
        input_text=prompt,
        output=per_prompt * generations,
        citation=citation_window * generations,
        search_queries=search_queries_bound * generations,
    )


def reservation_nano(
    shape: RequestShape,
    version: PriceVersion,
    *,
    search_queries_bound: int = DEFAULT_SEARCH_QUERIES_BOUND,
) -> int:
    """Worst-case cost of the request in nano-USD: what to reserve in every budget."""
    usage = worst_case_usage(shape, version, search_queries_bound=search_queries_bound)
    flat = PriceVersion(
        provider=version.provider,
        model=version.model,
        effective_from=version.effective_from,
        rates=_max_rates(version, usage.prompt_tokens),
    )
    return price_usage(usage, flat).total + ROUNDING_SLACK_NANO


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget's counters at decision time (nano-USD)."""

    budget_id: int
    owner_type: str
    owner_id: int
    limit_nano: int
    spent_nano: int
    reserved_nano: int

    def admits(self, amount_nano: int) -> bool:
        return self.spent_nano + self.reserved_nano + amount_nano <= self.limit_nano


def first_refusal(states: Sequence[BudgetState], amount_nano: int) -> BudgetState | None:
    """The first budget (in the given order) that a reservation of ``amount_nano`` would pass."""
    for state in states:
        if not state.admits(amount_nano):
            return state
    return None


def soft_limit_reached(*, limit_nano: int, soft_pct: int | None, spent_nano: int) -> bool:
    """``spent ≥ soft_pct % of limit``, in exact integers."""
    return soft_pct is not None and spent_nano * 100 >= limit_nano * soft_pct


def crosses_soft_limit(
    *, limit_nano: int, soft_pct: int | None, before_nano: int, after_nano: int
) -> bool:
    reached_before = soft_limit_reached(
        limit_nano=limit_nano, soft_pct=soft_pct, spent_nano=before_nano
    )
    return not reached_before and soft_limit_reached(
        limit_nano=limit_nano, soft_pct=soft_pct, spent_nano=after_nano
    )


def describe_reset(next_reset: datetime | None) -> str:
    if next_reset is None:
        return "it never resets (lifetime budget)"
    return f"it resets at {next_reset.isoformat(timespec='seconds')}Z"


_KIND_LABELS = {"end_user": "end user", "each_end_user": "end user"}


def budget_label(
    *, owner_type: str, owner_name: str, model_pattern: str = "", scope_name: str = ""
) -> str:
    """Which budget, in words: "key budget of key 'app'", "end user budget of end user
    'u-1' of customer 'acme' for models 'openai/gpt-4o*'", "tag budget of tag 'beta'"."""
    kind = _KIND_LABELS.get(owner_type, owner_type)
    scoped = f" of {scope_name}" if scope_name else ""
    narrowed = f" for models '{model_pattern}'" if model_pattern else ""
    return f"{kind} budget of {kind} '{owner_name}'{scoped}{narrowed}"


def refusal_message(
    *,
    owner_type: str,
    owner_name: str,
    limit_nano: int,
    spent_nano: int,
    reserved_nano: int,
    requested_nano: int,
    next_reset: datetime | None,
    model_pattern: str = "",
    scope_name: str = "",
) -> str:
    """The 402 message: which budget (its end user or tag; narrowed: to which models),
    its limit, spent, reserved, and when it resets."""
    label = budget_label(
        owner_type=owner_type,
        owner_name=owner_name,
        model_pattern=model_pattern,
        scope_name=scope_name,
    )
    return (
        f"{label} would be exceeded: limit "
        f"${format_usd(limit_nano)}, spent ${format_usd(spent_nano)}, reserved by requests "
        f"in flight ${format_usd(reserved_nano)}, this request may cost up to "
        f"${format_usd(requested_nano)}; {describe_reset(next_reset)}. Lower max_tokens, "
        "wait for the reset, or raise the limit with `metering budgets set`."
    )
