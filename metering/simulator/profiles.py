"""The simulated models: their usage profiles, the words they answer with, and the
token arithmetic every API shape shares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WORDS = ("metered", "tokens", "flow", "through", "the", "gateway", "and", "cost", "adds", "up")

# Answer length in words (= tokens) when the request sets no smaller limit.
ANSWER_TOKENS = 16
# Tokens a request costs before its text: role markers, the template.
OVERHEAD_TOKENS = 8


@dataclass(frozen=True)
class Profile:
    cache_read_share: int = 0  # % of the prompt read from the provider's cache
    cache_write: int = 0  # prompt tokens written to the cache
    reasoning: int = 0  # reasoning tokens per choice (inside completion_tokens)
    citation: int = 0
    search_queries: int = 0
    reported_cost: bool = False  # include usage.cost (float USD, as providers do)


PROFILES: dict[str, Profile] = {
    "openai/gpt-4o": Profile(cache_read_share=50),
    "openai/gpt-4o-mini": Profile(),
    "openai/o3-mini": Profile(reasoning=48),
    "anthropic/claude-sonnet-4-5": Profile(cache_read_share=40, cache_write=12, reported_cost=True),
    "perplexity/sonar": Profile(search_queries=1, reported_cost=True),
    "perplexity/sonar-deep-research": Profile(
        reasoning=40, citation=120, search_queries=3, reported_cost=True
    ),
    "gemini/gemini-2.5-pro": Profile(cache_read_share=25),
}
# Served by POST /v1/embeddings (usage: input tokens only).
EMBEDDING_MODELS = ("openai/text-embedding-3-small", "openai/text-embedding-3-large")
# USD per 1M tokens the simulated providers report in usage.cost (input, output).
REPORTED_RATES = {"anthropic": (3.0, 15.0), "perplexity": (2.0, 8.0)}


def text_tokens(text: str) -> int:
    """Tokens of a text: one per 4 characters, rounded up."""
    return -(-len(text) // 4)


def prompt_tokens(text: str, profile: Profile) -> int:
    """A one-prompt request's input tokens, cache writes included (as ``make_usage``)."""
    return OVERHEAD_TOKENS + text_tokens(text) + profile.cache_write


def output_split(profile: Profile, limit: object) -> tuple[int, int]:
    """(text, reasoning) tokens of one answer; their sum stays within an int ``limit``.

    The text takes the budget first, reasoning gets what is left of it.
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        return ANSWER_TOKENS, profile.reasoning
    text = min(ANSWER_TOKENS, limit)
    return text, min(profile.reasoning, limit - text)


def reported_cost(served: str, input_tokens: int, output_tokens: int, searches: int) -> Any:
    """``usage.cost`` as the provider of ``served`` reports it (float USD)."""
    rate_in, rate_out = REPORTED_RATES.get(served.partition("/")[0], (1.0, 1.0))
    cost_in = round(input_tokens * rate_in / 1e6, 9)
    cost_out = round(output_tokens * rate_out / 1e6, 9)
    search = round(searches * 0.005, 9)
    return {
        "input_tokens_cost": cost_in,
        "output_tokens_cost": cost_out,
        "search_queries_cost": search,
        "total_cost": round(cost_in + cost_out + search, 9),
    }


def search_count(profile: Profile, tools: object) -> int:
    """Web searches of an answer: the profile's, at least one when a search tool is asked."""
    asked = isinstance(tools, list) and any(
        isinstance(t, dict) and str(t.get("type", "")).startswith("web_search") for t in tools
    )
    return max(profile.search_queries, 1) if asked else profile.search_queries


def answer_text(index: int, tokens: int) -> str:
    return " ".join(WORDS[(index + i) % len(WORDS)] for i in range(max(tokens, 1)))


def text_pieces(text: str, chunks: int) -> list[str]:
    """``text`` in about ``chunks`` stream deltas that concatenate back to it."""
    words = text.split(" ")
    size = -(-len(words) // max(chunks, 1))
    groups = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [groups[0], *(" " + g for g in groups[1:])]


def joined_text(parts: Iterable[object]) -> str:
    """The text of message contents: strings, or lists of blocks with a ``text``."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, list):
            out.extend(
                b["text"] for b in part if isinstance(b, Mapping) and isinstance(b.get("text"), str)
            )
    return "".join(out)
