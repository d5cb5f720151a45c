"""Price sheets (our TOML, LiteLLM's JSON) → PriceVersion objects. Pure: text in, objects out.

Our TOML sheet (rates per 1M tokens, unit prices per query / request, as strings)::

    provider = "openai"
    effective_from = "2024-08-06"

    [models."gpt-4o"]
    input = "2.50"
    cache_read = "1.25"
    output = "10.00"
    max_output_tokens = 16384

    [[models."gemini-2.5-pro".tiers]]     # long-context tier
    above_prompt_tokens = 200000
    input = "2.50"

LiteLLM's ``model_prices_and_context_window.json`` has per-token USD figures;
they are read as Decimal straight from the JSON text (never through float)
and scaled to per-1M.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from metering.core.pricing import PriceVersion, Rates, Tier
from metering.core.responses import MAX_MODEL_CHARS, MAX_PROVIDER_CHARS
from metering.errors import PricingError, SheetError

_META_FIELDS = {"max_input_tokens", "max_output_tokens", "mode", "effective_from", "tiers"}
TEXT_MODES = {"chat", "completion", "responses"}
# Embeddings are imported too, priced by their input tokens (their output is 0 tokens);
# every other mode (images, audio, rerank, …) is skipped with a count.
EMBEDDING_MODE = "embedding"
IMPORTED_MODES = TEXT_MODES | {EMBEDDING_MODE}
_MILLION = Decimal(1_000_000)


class TomlFloat(Decimal):
    """A TOML float, read exactly but refused as a rate: rates are decimal strings, which
    every TOML reader keeps as written (a float it may round)."""

    __slots__ = ()


def _refuse_floats(fields: dict[str, Any], where: str) -> None:
    for name, value in fields.items():
        if isinstance(value, TomlFloat):
            raise SheetError(
                f"{where}{name} = {value} is a TOML float; rates are decimal strings: "
                f'quote it ({name} = "{value}")'
            )


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise SheetError(f"{where}effective_from {value!r} is not a date (YYYY-MM-DD)") from None


def _positive_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    shown = str(value) if isinstance(value, int | Decimal) else repr(value)
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or int(value) != value:
        raise SheetError(f"{where} must be a whole number, got {shown}")
    if value <= 0:
        raise SheetError(f"{where} must be positive, got {shown}")
    return int(value)


def parse_toml_sheet(text: str, *, source: str = "") -> list[PriceVersion]:
    """Parse one TOML sheet (one provider, one ``effective_from``) into price versions."""
    where = f"{source}: " if source else ""
    try:
        data = tomllib.loads(text, parse_float=TomlFloat)
    except tomllib.TOMLDecodeError as exc:
        raise SheetError(f"{where}not valid TOML: {exc}") from None
    provider = data.get("provider")
    if not isinstance(provider, str) or not provider or "/" in provider:
        raise SheetError(f"{where}needs a top-level provider = \"name\" (no '/')")
    if "effective_from" not in data:
        raise SheetError(f'{where}needs a top-level effective_from = "YYYY-MM-DD"')
    sheet_from = _parse_date(data["effective_from"], where)
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise SheetError(f'{where}has no [models."name"] tables')
    versions = []
    for model, entry in models.items():
        at = f"{where}models.{model}: "
        if not isinstance(entry, dict):
            raise SheetError(f"{at}must be a table")
        rate_fields = {k: v for k, v in entry.items() if k not in _META_FIELDS}
        _refuse_floats(rate_fields, at)
        try:
            rates = Rates.from_mapping(rate_fields, at)
            tiers = tuple(_toml_tier(t, at) for t in entry.get("tiers", []))
        except PricingError as exc:
            raise SheetError(str(exc)) from None
        versions.append(
            PriceVersion(
                provider=provider,
                model=model,
                effective_from=_parse_date(entry.get("effective_from", sheet_from), at),
                rates=rates,
                tiers=tiers,
                max_input_tokens=_positive_int(
                    entry.get("max_input_tokens"), at + "max_input_tokens"
                ),
                max_output_tokens=_positive_int(
                    entry.get("max_output_tokens"), at + "max_output_tokens"
                ),
                mode=str(entry.get("mode", "chat")),
                source=source,
            )
        )
    return versions


def _toml_tier(data: Any, where: str) -> Tier:
    if not isinstance(data, dict) or "above_prompt_tokens" not in data:
        raise SheetError(f"{where}each [[tiers]] needs above_prompt_tokens")
    threshold = _positive_int(data["above_prompt_tokens"], where + "tiers.above_prompt_tokens")
    assert threshold is not None
    rate_fields = {k: v for k, v in data.items() if k != "above_prompt_tokens"}
    _refuse_floats(rate_fields, f"{where}tier above {threshold}: ")
    rates = Rates.from_mapping(rate_fields, where)
    return Tier(threshold, rates)


# ---------------------------------------------------------------- LiteLLM JSON

# litellm_provider → the provider name Bifrost uses in ``provider/model``.
_PROVIDER_ALIASES = {
    "text-completion-openai": "openai",
    "text-completion-codestral": "mistral",
    "vertex_ai-language-models": "vertex",
    "vertex_ai": "vertex",
    "bedrock_converse": "bedrock",
    "azure_ai": "azure",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
}
_LITELLM_TOKEN_KEYS = {
    "input_cost_per_token": "input",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_token": "output",
    "output_cost_per_reasoning_token": "reasoning",
    "citation_cost_per_token": "citation",
    "input_cost_per_audio_token": "input_audio",
    "input_cost_per_image_token": "input_image",
    "output_cost_per_audio_token": "output_audio",
}
_TIER_KEY = re.compile(r"^(?P<base>[a-z0-9_]+?)_above_(?P<k>\d+)k_tokens$")


def litellm_provider(name: str) -> str:
    if name in _PROVIDER_ALIASES:
        return _PROVIDER_ALIASES[name]
    if name.startswith("vertex_ai-"):
        return "vertex"
    return name


@dataclass
class ImportReport:
    versions: list[PriceVersion] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # by kind: "mode audio_speech"…
    skipped_entries: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, name: str, kind: str, why: str) -> None:
        self.skipped[kind] += 1
        self.skipped_entries.append((name, why))


def _name_problem(provider: str, model: str) -> str | None:
    """Why ``provider/model`` cannot name a price version (None if it can)."""
    if not provider.strip():
        return "its litellm_provider is empty"
    if not model.strip():
        return "its model name is empty"
    name = f"{provider}/{model}"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "its name has a space or a control character"
    if model.startswith("/") or model.endswith("/") or "//" in model:
        return "its model name has an empty part between slashes"
    if len(provider) > MAX_PROVIDER_CHARS or len(model) > MAX_MODEL_CHARS:
        return f"its name is longer than {MAX_PROVIDER_CHARS}/{MAX_MODEL_CHARS} characters"
    return None


def parse_litellm_json(text: str, *, effective_from: date, source: str = "") -> ImportReport:
    """Read LiteLLM's price table: text-mode models with a token price, and embedding
    models with an input token price, become versions; every other entry is skipped with
    its reason in ``skipped_entries``."""
    where = f"{source}: " if source else ""
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise SheetError(f"{where}not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SheetError(f"{where}expected a JSON object of model entries")
    report = ImportReport()
    seen: set[str] = set()
    for key, entry in data.items():
        if key == "sample_spec":
            report.skip(key, "sample_spec", "LiteLLM's description of the fields, not a model")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_provider"), str):
            report.skip(key, "no litellm_provider", "no litellm_provider")
            continue
        mode = entry.get("mode") or "chat"
        if mode not in IMPORTED_MODES:
            report.skip(key, f"mode {mode}", f"mode {mode} is not priced per token")
            continue
        if mode == EMBEDDING_MODE:
            priced = "input_cost_per_token" in entry  # not per character, image or second
        else:
            priced = "input_cost_per_token" in entry or "output_cost_per_token" in entry
        if not priced:
            what = "input token" if mode == EMBEDDING_MODE else "token"
            report.skip(key, "no per-token price", f"no price per {what}")
            continue
        raw_provider = entry["litellm_provider"]
        provider = litellm_provider(raw_provider)
        model = key
        for prefix in {raw_provider, provider}:
            if prefix and model.startswith(prefix + "/"):
                model = model[len(prefix) + 1 :]
        problem = _name_problem(provider, model)
        if problem is not None:
            report.skip(key, "bad name", problem)
            continue
        if f"{provider}/{model}" in seen:
            report.skip(key, "duplicate provider/model", f"repeats {provider}/{model}")
            continue
        try:
            version = _litellm_version(entry, provider, model, effective_from, source, mode)
        except (PricingError, SheetError, ArithmeticError) as exc:
            report.skip(key, "bad price", str(exc))
            continue
        seen.add(f"{provider}/{model}")
        report.versions.append(version)
    return report


def _per_million(key: str, value: Any) -> Decimal | None:
    """A per-token USD figure of LiteLLM's table → USD per 1M tokens."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise PricingError(f"{key} is {json.dumps(value)}, not a number")
    if not Decimal(value).is_finite() or value < 0:
        raise PricingError(f"{key} is {value}, not a non-negative number")
    return Decimal(value) * _MILLION


def _litellm_version(
    entry: dict[str, Any], provider: str, model: str, effective_from: date, source: str, mode: str
) -> PriceVersion:
    base: dict[str, Decimal | None] = {}
    tiers: dict[int, dict[str, Decimal | None]] = {}
    for key, value in entry.items():
        if key in _LITELLM_TOKEN_KEYS:
            base[_LITELLM_TOKEN_KEYS[key]] = _per_million(key, value)
            continue
        m = _TIER_KEY.match(key)
        if m and m["base"] in _LITELLM_TOKEN_KEYS:
            rate = _LITELLM_TOKEN_KEYS[m["base"]]
            tiers.setdefault(int(m["k"]) * 1000, {})[rate] = _per_million(key, value)
    search = entry.get("search_context_cost_per_query")
    if isinstance(search, dict):
        low = search.get("search_context_size_low")
        if isinstance(low, int | Decimal) and not isinstance(low, bool):
            base["search_query"] = Decimal(low)
    per_request = entry.get("input_cost_per_request")
    if isinstance(per_request, int | Decimal) and not isinstance(per_request, bool):
        base["request"] = Decimal(per_request)

    def ints(name: str) -> int | None:
        value = entry.get(name)
        return (
            int(value)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0
            else None
        )

    return PriceVersion(
        provider=provider,
        model=model,
        effective_from=effective_from,
        rates=Rates.from_mapping(base),
        tiers=tuple(Tier(k, Rates.from_mapping(v)) for k, v in sorted(tiers.items())),
        max_input_tokens=ints("max_input_tokens"),
        max_output_tokens=ints("max_output_tokens") or ints("max_tokens"),
        mode=mode,
        source=source,
    )


def version_to_dict(version: PriceVersion) -> dict[str, Any]:
    """JSON-safe form (decimal strings) for storage and ``--format json``."""
    return {
        "provider": version.provider,
        "model": version.model,
        "effective_from": version.effective_from.isoformat(),
        "rates": version.rates.as_strings(),
        "tiers": [
            {"above_prompt_tokens": t.above_prompt_tokens, **t.rates.as_strings()}
            for t in version.tiers
        ],
        "max_input_tokens": version.max_input_tokens,
        "max_output_tokens": version.max_output_tokens,
        "mode": version.mode,
        "source": version.source,
    }


def tiers_from_json(items: list[dict[str, Any]]) -> tuple[Tier, ...]:
    """Stored tiers (unbounded, as stored rates: see ``Rates.from_mapping``)."""
    return tuple(
        Tier(
            int(t["above_prompt_tokens"]),
            Rates.from_mapping(
                {k: v for k, v in t.items() if k != "above_prompt_tokens"}, bounded=False
            ),
        )
        for t in items
    )
