import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from metering.core.money import format_usd
from metering.core.pricing import PriceBook, price_usage
from metering.core.sheets import parse_litellm_json, parse_toml_sheet
from metering.core.usage import normalize_usage
from metering.errors import SheetError
from tests.core.test_pricing import FIXTURES

LITELLM = Path(__file__).resolve().parents[1] / "fixtures" / "litellm_model_prices.json"


@pytest.fixture(scope="module")
def litellm_text() -> str:
    return LITELLM.read_text()  # a copy of LiteLLM's table (MIT, licence beside it)


def test_litellm_import_of_the_full_table(litellm_text: str) -> None:
    report = parse_litellm_json(litellm_text, effective_from=date(2026, 1, 1), source="litellm")
    assert len(report.versions) > 3000
    assert "mode embedding" not in report.skipped  # embeddings are kept
    assert report.skipped["mode image_generation"] > 100  # other non-text modes are not
    assert report.skipped["sample_spec"] == 1
    assert report.skipped_total > 1000
    keys = {v.key for v in report.versions}
    assert {"openai/gpt-4o", "gemini/gemini-2.5-pro", "perplexity/sonar"} <= keys
    assert "openai/gpt-3.5-turbo-instruct" in keys  # text-completion-openai → openai
    # no version needs max_tokens; every one has a token price
    assert all(v.rates.input is not None or v.rates.output is not None for v in report.versions)


def test_litellm_import_keeps_embedding_models_priced_per_input_token(litellm_text: str) -> None:
    report = parse_litellm_json(litellm_text, effective_from=date(2026, 1, 1))
    embeddings = {v.key: v for v in report.versions if v.mode == "embedding"}
    large = embeddings["openai/text-embedding-3-large"]
    assert large.rates.input == Decimal("0.13")  # 1.3e-07 USD a token
    assert large.rates.output == 0 and large.max_output_tokens is None
    assert embeddings["openai/text-embedding-3-small"].rates.input == Decimal("0.02")
    assert embeddings["openai/text-embedding-ada-002"].rates.input == Decimal("0.10")
    assert all(v.rates.input is not None for v in embeddings.values())
    # The table's 157 embedding entries: 9 have no input price per token (priced per
    # query, image or second of video, or not at all) and are skipped as unpriced, never
    # imported as free; 2 (vertex_ai/gemini-embedding-2{,-preview}) repeat a
    # provider/model; the other 146 are imported.
    entries = json.loads(litellm_text)
    modes = [e.get("mode") for e in entries.values() if isinstance(e, dict)]
    assert modes.count("embedding") == 157
    assert len(embeddings) == 146
    assert "github_copilot/text-embedding-3-small" not in embeddings
    assert not any("marengo-embed" in key for key in embeddings)


@pytest.mark.parametrize("model, usage, expected", FIXTURES)
def test_litellm_prices_fixtures_like_the_sheets(
    litellm_text: str, model: str, usage: dict[str, object], expected: str
) -> None:
    report = parse_litellm_json(litellm_text, effective_from=date(2026, 1, 1))
    book = PriceBook(report.versions)
    provider, name = model.split("/", 1)
    version = book.lookup(provider, name, date(2026, 11, 27))
    assert version is not None
    assert format_usd(price_usage(normalize_usage(usage), version).total) == expected


def test_litellm_tiers_and_unit_prices(litellm_text: str) -> None:
    report = parse_litellm_json(litellm_text, effective_from=date(2026, 1, 1))
    gemini = next(v for v in report.versions if v.key == "gemini/gemini-2.5-pro")
    assert [t.above_prompt_tokens for t in gemini.tiers] == [200_000]
    assert gemini.tiers[0].rates.input == Decimal("2.5")
    assert gemini.tiers[0].rates.output == Decimal("15")
    sonar = next(v for v in report.versions if v.key == "perplexity/sonar")
    assert sonar.rates.search_query is not None and sonar.rates.search_query * 1000 == 5


def test_litellm_one_hour_cache_write_rate_and_its_tiers(litellm_text: str) -> None:
    report = parse_litellm_json(litellm_text, effective_from=date(2026, 1, 1))
    by_key = {v.key: v for v in report.versions}
    sonnet = by_key["anthropic/claude-sonnet-4-5"]
    assert (sonnet.rates.cache_write, sonnet.rates.cache_write_1h) == (Decimal("3.75"), 6)
    # cache_creation_input_token_cost_above_1hr_above_200k_tokens: the tier's 1-hour rate
    bedrock = by_key["bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"]
    assert [(t.above_prompt_tokens, t.rates.cache_write_1h) for t in bedrock.tiers] == [
        (200_000, 12)
    ]
    assert by_key["openai/gpt-4o"].rates.cache_write_1h is None


def test_toml_sheet_reads_the_one_hour_cache_write_rate() -> None:
    (v,) = parse_toml_sheet(
        'provider = "p"\neffective_from = "2024-01-01"\n[models.m]\ninput = "3"\n'
        'cache_write = "3.75"\ncache_write_1h = "6.00"\n'
    )
    assert (v.rates.cache_write, v.rates.cache_write_1h) == (Decimal("3.75"), Decimal("6.00"))


def test_toml_sheet_errors_name_the_entry() -> None:
    with pytest.raises(SheetError, match="not valid TOML"):
        parse_toml_sheet("provider = ", source="x.toml")
    with pytest.raises(SheetError, match="provider"):
        parse_toml_sheet('effective_from = "2024-01-01"\n[models.a]\ninput = "1"\n')
    with pytest.raises(SheetError, match=r"models\.m: input='-1'"):
        parse_toml_sheet(
            'provider = "p"\neffective_from = "2024-01-01"\n[models.m]\ninput = "-1"\n'
        )
    with pytest.raises(SheetError, match="unknown price field"):
        parse_toml_sheet('provider = "p"\neffective_from = "2024-01-01"\n[models.m]\ninptu = "1"\n')
    with pytest.raises(SheetError, match="not a date"):
        parse_toml_sheet('provider = "p"\neffective_from = "soon"\n[models.m]\ninput = "1"\n')


def test_litellm_bad_json() -> None:
    with pytest.raises(SheetError, match="not valid JSON"):
        parse_litellm_json("{", effective_from=date(2026, 1, 1))


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            'input = 0.15\noutput = "0.60"\n',
            "sheet:x.toml: models.m: input = 0.15 is a TOML float; rates are decimal "
            'strings: quote it (input = "0.15")',
        ),
        (
            'input = "1"\noutput = "2"\n[[models.m.tiers]]\nabove_prompt_tokens = 200000\n'
            "output = 2.5e0\n",
            "sheet:x.toml: models.m: tier above 200000: output = 2.5 is a TOML float; rates "
            'are decimal strings: quote it (output = "2.5")',
        ),
    ],
)
def test_a_toml_float_rate_is_refused(entry: str, message: str) -> None:
    text = f'provider = "x"\neffective_from = "2026-01-01"\n[models.m]\n{entry}'
    with pytest.raises(SheetError) as info:
        parse_toml_sheet(text, source="sheet:x.toml")
    assert str(info.value) == message


def test_toml_integers_and_strings_are_rates() -> None:
    text = 'provider = "x"\neffective_from = "2026-01-01"\n[models.m]\ninput = 2\noutput = "0.6"\n'
    (version,) = parse_toml_sheet(text)
    assert (version.rates.input, version.rates.output) == (Decimal(2), Decimal("0.6"))
    assert type(version.rates.input) is Decimal


def test_litellm_skipped_entries_are_named_with_their_reason() -> None:
    table = json.dumps(
        {
            "sample_spec": {"litellm_provider": "openai", "input_cost_per_token": 0},
            "": {"litellm_provider": "openai", "input_cost_per_token": 1e-6},
            "openai/": {"litellm_provider": "openai", "input_cost_per_token": 1e-6},
            "gpt x": {"litellm_provider": "openai", "input_cost_per_token": 1e-6},
            "a//b": {"litellm_provider": "openai", "input_cost_per_token": 1e-6},
            "m": {"litellm_provider": "", "input_cost_per_token": 1e-6},
            "orphan": {"input_cost_per_token": 1e-6},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation"},
            "free": {"litellm_provider": "openai", "mode": "chat"},
            "emb": {"litellm_provider": "openai", "mode": "embedding"},
            "neg": {"litellm_provider": "openai", "input_cost_per_token": -1e-6},
            "text": {"litellm_provider": "openai", "output_cost_per_token": "cheap"},
            "gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-6},
            "openai/gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-6},
        }
    )
    report = parse_litellm_json(table, effective_from=date(2026, 1, 1))
    assert [v.key for v in report.versions] == ["openai/gpt-4o"]
    assert report.skipped_entries == [
        ("sample_spec", "LiteLLM's description of the fields, not a model"),
        ("", "its model name is empty"),
        ("openai/", "its model name is empty"),
        ("gpt x", "its name has a space or a control character"),
        ("a//b", "its model name has an empty part between slashes"),
        ("m", "its litellm_provider is empty"),
        ("orphan", "no litellm_provider"),
        ("dall-e-3", "mode image_generation is not priced per token"),
        ("free", "no price per token"),
        ("emb", "no price per input token"),
        ("neg", "input_cost_per_token is -0.000001, not a non-negative number"),
        ("text", 'output_cost_per_token is "cheap", not a number'),
        ("openai/gpt-4o", "repeats openai/gpt-4o"),
    ]
    assert report.skipped_total == 13
    assert report.skipped["bad name"] == 5 and report.skipped["bad price"] == 2
    assert not any("Decimal(" in why for _, why in report.skipped_entries)


def test_a_fractional_token_limit_is_named_without_a_repr() -> None:
    text = (
        'provider = "x"\neffective_from = "2026-01-01"\n[models.m]\ninput = "1"\n'
        "max_output_tokens = 100.5\n"
    )
    with pytest.raises(SheetError) as info:
        parse_toml_sheet(text)
    assert str(info.value) == "models.m: max_output_tokens must be a whole number, got 100.5"
