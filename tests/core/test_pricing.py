"""Worked fixtures with the shipped sheets, exact to the nano-dollar, plus properties."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.money import format_usd
from metering.core.pricing import (
    PriceBook,
    PriceVersion,
    Rates,
    Tier,
    price_usage,
    version_in_force,
)
from metering.core.sheets import parse_toml_sheet
from metering.core.usage import MAX_SEARCH_QUERIES, normalize_usage
from metering.resources import pricing_dir

TODAY = date(2026, 11, 27)

# (model, usage, expected total USD) — the fixtures of issue 2.
FIXTURES = [
    (
        "openai/gpt-4o",
        {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_read_tokens": 200},
        },
        "0.00725",
    ),
    ("gemini/gemini-2.5-pro", {"prompt_tokens": 250_000, "completion_tokens": 1000}, "0.64"),
    (
        "perplexity/sonar",
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "completion_tokens_details": {"num_search_queries": 1},
        },
        "0.00515",
    ),
    (
        "openai/o3-mini",
        {"completion_tokens": 1000, "completion_tokens_details": {"reasoning_tokens": 800}},
        "0.0044",
    ),
    (
        "anthropic/claude-sonnet-4-5",
        {
            "prompt_tokens": 12_307,
            "completion_tokens": 550,
            "prompt_tokens_details": {"cached_write_tokens": 12_304},
        },
        "0.054399",
    ),
]


def shipped_book() -> PriceBook:
    versions: list[PriceVersion] = []
    for path in sorted(Path(pricing_dir()).glob("*.toml")):
        versions += parse_toml_sheet(path.read_text(), source=path.name)
    return PriceBook(versions)


def quote(book: PriceBook, model: str, usage: dict[str, object]) -> str:
    provider, name = model.split("/", 1)
    version = book.lookup(provider, name, TODAY)
    assert version is not None, model
    return format_usd(price_usage(normalize_usage(usage), version).total)


@pytest.mark.parametrize("model, usage, expected", FIXTURES)
def test_worked_fixtures_with_shipped_sheets(
    model: str, usage: dict[str, object], expected: str
) -> None:
    assert quote(shipped_book(), model, usage) == expected


def test_components_of_gpt4o_fixture() -> None:
    version = shipped_book().lookup("openai", "gpt-4o", TODAY)
    assert version is not None
    cost = price_usage(
        normalize_usage(
            {
                "prompt_tokens": 1000,
                "completion_tokens": 500,
                "prompt_tokens_details": {"cached_tokens": 200},
            }
        ),
        version,
    )
    assert (cost.input, cost.cache_read, cost.output) == (2_000_000, 250_000, 5_000_000)
    assert cost.total == 7_250_000


def test_embedding_models_are_priced_by_input_tokens_only() -> None:
    book = shipped_book()
    small = book.lookup("openai", "text-embedding-3-small", TODAY)
    assert small is not None and small.mode == "embedding"
    assert small.rates.output is None and small.max_output_tokens is None
    usage = {"prompt_tokens": 1000, "total_tokens": 1000}
    assert quote(book, "openai/text-embedding-3-small", usage) == "0.00002"
    cost = price_usage(normalize_usage(usage), small)
    assert cost.as_dict() == {**dict.fromkeys(cost.as_dict(), 0), "input": 20_000}
    assert quote(book, "openai/text-embedding-3-large", usage) == "0.00013"
    assert quote(book, "openai/text-embedding-ada-002", usage) == "0.0001"


def test_long_context_tier_starts_above_the_threshold() -> None:
    book = shipped_book()
    at_threshold = quote(
        book, "gemini/gemini-2.5-pro", {"prompt_tokens": 200_000, "completion_tokens": 1000}
    )
    assert at_threshold == "0.26"  # 200k × 1.25 + 1k × 10.00, base rates
    above = quote(book, "gemini/gemini-2.5-pro", {"prompt_tokens": 200_001, "completion_tokens": 0})
    assert above == "0.5000025"  # whole request at the tier's 2.50


def test_fallback_rates() -> None:
    version = PriceVersion("p", "m", date(2024, 1, 1), Rates(input=Decimal(2), output=Decimal(8)))
    cost = price_usage(
        normalize_usage(
            {
                "prompt_tokens": 1_000_000,
                "completion_tokens": 1_000_000,
                "prompt_tokens_details": {
                    "cached_read_tokens": 250_000,
                    "cached_write_tokens": 250_000,
                },
                "completion_tokens_details": {"reasoning_tokens": 400_000, "citation_tokens": 7},
            }
        ),
        version,
    )
    # cache rates fall back to input, reasoning to output; no citation rate → not billed
    assert (cost.input, cost.cache_read, cost.cache_write) == (
        1_000_000_000,
        500_000_000,
        500_000_000,
    )
    assert (cost.output, cost.reasoning, cost.citation) == (4_800_000_000, 3_200_000_000, 0)


# input 3, cache write 3.75 (1.25×), 1-hour cache write 6 (2×) per 1M tokens
ONE_HOUR = Rates(input=Decimal(3), cache_write=Decimal("3.75"), cache_write_1h=Decimal(6))
WRITES = {
    "prompt_tokens": 1100,
    "prompt_tokens_details": {"cached_write_tokens": 100, "cached_write_1h_tokens": 40},
}


def test_one_hour_cache_writes_have_their_own_rate() -> None:
    version = PriceVersion("anthropic", "m", date(2024, 1, 1), ONE_HOUR)
    usage = normalize_usage(WRITES)
    assert (usage.input_text, usage.cache_write, usage.cache_write_1h) == (1000, 60, 40)
    cost = price_usage(usage, version)
    # 60 × 3.75 + 40 × 6 USD per 1M = 225_000 + 240_000 nano-USD, in the cache_write cost
    assert cost.cache_write == 60 * 3750 + 40 * 6000 == 465_000
    assert (cost.input, cost.total) == (3_000_000, 3_465_000)


@pytest.mark.parametrize(
    "rates, per_token",
    [
        (Rates(input=Decimal(3), cache_write=Decimal("3.75")), 3750),  # → cache_write
        (Rates(input=Decimal(3)), 3000),  # → cache_write → input
        (Rates(input=Decimal(3), cache_write_1h=Decimal(6)), 6000),  # its own
        (Rates(output=Decimal(1)), 0),  # no input rate either: free, as every input rate
    ],
)
def test_one_hour_cache_write_falls_back_through_cache_write_to_input(
    rates: Rates, per_token: int
) -> None:
    version = PriceVersion("p", "m", date(2024, 1, 1), rates)
    assert version.rates_for(0).cache_write_1h == Decimal(per_token) / 1000
    cost = price_usage(normalize_usage(WRITES), version)
    other_writes = 60 * (3750 if rates.cache_write is not None else 3000 if rates.input else 0)
    assert cost.cache_write == other_writes + 40 * per_token


def test_shipped_anthropic_sheet_prices_one_hour_writes() -> None:
    book = shipped_book()
    sonnet = book.lookup("anthropic", "claude-sonnet-4-5", TODAY)
    older = book.lookup("anthropic", "claude-3-5-sonnet-20241022", TODAY)
    assert sonnet is not None and older is not None
    assert sonnet.rates.cache_write_1h == Decimal("6.00")
    assert older.rates.cache_write_1h is None  # not in LiteLLM's table: billed as cache_write
    assert price_usage(normalize_usage(WRITES), sonnet).cache_write == 465_000
    assert price_usage(normalize_usage(WRITES), older).cache_write == 100 * 3750


def test_deep_research_prices_every_component() -> None:
    version = shipped_book().lookup("perplexity", "sonar-deep-research", TODAY)
    assert version is not None
    cost = price_usage(
        normalize_usage(
            {
                "prompt_tokens": 1000,
                "completion_tokens": 3000,
                "completion_tokens_details": {
                    "reasoning_tokens": 2000,
                    "citation_tokens": 500,
                    "num_search_queries": 3,
                },
            }
        ),
        version,
    )
    assert cost.as_dict() == {
        "input": 2_000_000,
        "cache_read": 0,
        "cache_write": 0,
        "output": 8_000_000,
        "reasoning": 6_000_000,
        "citation": 1_000_000,
        "search": 15_000_000,
        "request": 0,
    }


def test_version_in_force_by_date() -> None:
    rates = Rates(input=Decimal(1))
    old = PriceVersion("p", "m", date(2024, 1, 1), rates)
    new = PriceVersion("p", "m", date(2025, 6, 1), Rates(input=Decimal(2)))
    assert version_in_force([new, old], date(2025, 5, 31)) is old
    assert version_in_force([new, old], date(2025, 6, 1)) is new
    assert version_in_force([new, old], date(2023, 12, 31)) is None


tokens = st.integers(min_value=0, max_value=5_000_000)
rates = st.decimals(min_value=0, max_value=500, places=4, allow_nan=False, allow_infinity=False)


@st.composite
def versions(draw: st.DrawFn) -> PriceVersion:
    base = Rates(
        input=draw(rates),
        cache_read=draw(st.none() | rates),
        cache_write=draw(st.none() | rates),
        cache_write_1h=draw(st.none() | rates),
        output=draw(rates),
        reasoning=draw(st.none() | rates),
        citation=draw(st.none() | rates),
        search_query=draw(st.none() | rates),
        request=draw(st.none() | rates),
    )
    tiers = ()
    if draw(st.booleans()):
        tiers = (
            Tier(draw(st.integers(1, 3_000_000)), Rates(input=draw(rates), output=draw(rates))),
        )
    return PriceVersion("p", "m", date(2024, 1, 1), base, tiers)


@st.composite
def usages(draw: st.DrawFn) -> dict[str, object]:
    writes = draw(tokens)
    return {
        "prompt_tokens": draw(tokens),
        "completion_tokens": draw(tokens),
        "prompt_tokens_details": {
            "cached_read_tokens": draw(tokens),
            "cached_write_tokens": writes,
            # a part of the writes, or any count (larger than the writes: billed in full)
            "cached_write_1h_tokens": draw(st.integers(0, writes) | tokens),
        },
        "completion_tokens_details": {
            "reasoning_tokens": draw(tokens),
            "citation_tokens": draw(tokens),
            "num_search_queries": draw(st.integers(0, 50)),
        },
    }


@settings(derandomize=True)  # the same examples on every run
@given(versions(), usages())
def test_components_non_negative_and_total_is_their_sum(
    version: PriceVersion, usage: dict[str, object]
) -> None:
    cost = price_usage(normalize_usage(usage), version)
    parts = cost.as_dict().values()
    assert all(p >= 0 for p in parts)
    assert cost.total == sum(parts)


PROMPT = (None, "prompt_tokens")
WRITES_TOTAL = ("prompt_tokens_details", "cached_write_tokens")
COMPLETION = (None, "completion_tokens")
# (a count, the totals that contain it): each grown by the same number of tokens
GROWN: list[tuple[tuple[str | None, str], ...]] = [
    (("prompt_tokens_details", "cached_read_tokens"), PROMPT),
    (WRITES_TOTAL, PROMPT),
    (("prompt_tokens_details", "cached_write_1h_tokens"), WRITES_TOTAL, PROMPT),
    (("completion_tokens_details", "reasoning_tokens"), COMPLETION),
    (("completion_tokens_details", "citation_tokens"),),
    (("completion_tokens_details", "num_search_queries"),),
    (PROMPT,),
    (COMPLETION,),
]


@settings(derandomize=True)  # the same examples on every run
@given(
    versions().filter(lambda v: not v.tiers),
    usages(),
    st.sampled_from(GROWN),
    st.integers(1, 10_000),
)
def test_cost_is_monotone_in_each_token_count(
    version: PriceVersion,
    usage: dict[str, object],
    grown: tuple[tuple[str | None, str], ...],
    extra: int,
) -> None:
    """More tokens of any class (and the totals that contain them) never cost less."""
    bigger = {k: (dict(v) if isinstance(v, dict) else v) for k, v in usage.items()}
    for section, field in grown:
        target = bigger if section is None else bigger[section]
        assert isinstance(target, dict)
        more = min(extra, MAX_SEARCH_QUERIES - 50) if field == "num_search_queries" else extra
        target[field] += more
    before = price_usage(normalize_usage(usage), version)
    after = price_usage(normalize_usage(bigger), version)
    assert after.total >= before.total
    assert all(part >= 0 for part in after.as_dict().values())


@given(
    st.lists(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)), min_size=1),
    st.dates(),
)
def test_version_chosen_by_date_is_the_one_in_force(starts: list[date], on: date) -> None:
    vs = [PriceVersion("p", "m", d, Rates(input=Decimal(i))) for i, d in enumerate(starts)]
    chosen = version_in_force(vs, on)
    eligible = [v for v in vs if v.effective_from <= on]
    if not eligible:
        assert chosen is None
    else:
        assert chosen is not None
        assert chosen.effective_from == max(v.effective_from for v in eligible)


def test_fields_dropped_by_a_newer_version() -> None:
    old = PriceVersion(
        "p", "m", date(2024, 1, 1),
        Rates(input=Decimal(1), cache_read=Decimal("0.1"), output=Decimal(2)),
        tiers=(Tier(1000, Rates(input=Decimal(2))),),
        max_output_tokens=10,
    )  # fmt: skip
    new = PriceVersion("p", "m", date(2025, 1, 1), Rates(input=Decimal(1), output=Decimal(3)))
    assert old.fields_dropped_by(new) == ("cache_read", "tier above 1000", "max_output_tokens")
    assert new.fields_dropped_by(old) == ()
    assert old.fields_dropped_by(old) == ()
