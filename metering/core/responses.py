"""What a completions response says about who served it, what it used and what it cost.

Attribution (SPEC §5): the provider and model that *served* the request, after any
fallback — ``extra_fields.provider`` and the response's ``model`` (or
``extra_fields.model_deployment``); a served model without a provider prefix takes
the served provider. The requested ``provider/model`` is kept beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from metering.core.billing import Bill, BillingPolicy, bill_request, reported_cost_nano
from metering.core.pricing import PriceBook, PriceVersion
from metering.core.storable import has_control
from metering.core.usage import UsageBuckets, normalize_usage
from metering.errors import InvalidInput


def split_model(name: str) -> tuple[str, str]:
    """``provider/model`` → (provider, model); the model part may itself contain '/'."""
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model or provider.strip() != provider:
        raise InvalidInput(f"model {name!r} must be written provider/model (e.g. openai/gpt-4o)")
    return provider, model


# A requested model is stored (and sent upstream) as the client wrote it: longer names are
# refused, so that every admitted request is recordable.
MAX_MODEL_CHARS = 300
MAX_PROVIDER_CHARS = 100


def check_model_name(name: str) -> tuple[str, str]:
    """A client's ``provider/model`` → (provider, model), or InvalidInput saying why it
    cannot be accepted: not ``provider/model``, too long, a control character the
    database could not hold (``core.storable``), or several models (LiteLLM's ``a,b``
    syntax, which a LiteLLM upstream answers by calling each: one admitted call, several
    bills)."""
    if has_control(name):
        raise InvalidInput("model names may not contain control characters (e.g. NUL)")
    if "," in name:
        raise InvalidInput(
            "a model names one model: several comma-separated models are not accepted"
        )
    provider, model = split_model(name)
    if len(name) > MAX_MODEL_CHARS or len(provider) > MAX_PROVIDER_CHARS:
        raise InvalidInput(
            f"model names are at most {MAX_MODEL_CHARS} characters "
            f"(provider at most {MAX_PROVIDER_CHARS})"
        )
    return provider, model


@dataclass(frozen=True, slots=True)
class ResponseFacts:
    response_id: str | None
    provider: str
    model: str
    usage: UsageBuckets
    has_usage: bool
    reported_cost: int | None
    cache_hit_type: str | None  # None: not served from the gateway cache


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def served_model(response: Mapping[str, Any], requested: str) -> tuple[str, str]:
    req_provider, req_model = split_model(requested)
    extra = response.get("extra_fields")
    extra = extra if isinstance(extra, Mapping) else {}
    provider = _str(extra.get("provider")) or req_provider
    model = _str(response.get("model")) or _str(extra.get("model_deployment"))
    if model is None:
        model = (
            req_model
            if provider == req_provider
            else (_str(extra.get("model_requested")) or req_model)
        )
    prefix, sep, rest = model.partition("/")
    if sep and prefix == provider and rest:
        model = rest
    return provider, model


def read_response(response: Mapping[str, Any], requested: str) -> ResponseFacts:
    """Facts of a (non-streamed or reassembled) response. Raises UsageError on bad counts."""
    provider, model = served_model(response, requested)
    usage_obj = response.get("usage")
    has_usage = isinstance(usage_obj, Mapping)
    usage = normalize_usage(usage_obj if has_usage else None)
    extra = response.get("extra_fields")
    cache_hit_type = None
    if isinstance(extra, Mapping):
        debug = extra.get("cache_debug")
        if isinstance(debug, Mapping) and debug.get("cache_hit") is True:
            cache_hit_type = _str(debug.get("hit_type")) or "direct"
    return ResponseFacts(
        response_id=_str(response.get("id")),
        provider=provider,
        model=model,
        usage=usage,
        has_usage=has_usage,
        reported_cost=reported_cost_nano(usage_obj if has_usage else None),
        cache_hit_type=cache_hit_type,
    )


def find_price(
    book: PriceBook, *, provider: str, model: str, requested: str, on: date
) -> PriceVersion | None:
    """The served model's price; a dated snapshot name (``gpt-4o-2024-08-06``) falls back to
    the requested model's price when the provider is the one requested."""
    version = book.lookup(provider, model, on)
    if version is None:
        req_provider, req_model = split_model(requested)
        if req_provider == provider and model.startswith(req_model):
            version = book.lookup(provider, req_model, on)
    return version


def bill_response(
    facts: ResponseFacts,
    book: PriceBook,
    *,
    requested: str,
    on: date,
    policy: BillingPolicy = "reported",
    estimated: bool = False,
) -> Bill:
    version = find_price(
        book, provider=facts.provider, model=facts.model, requested=requested, on=on
    )
    return bill_request(
        facts.usage,
        version,
        reported_total=facts.reported_cost,
        policy=policy,
        estimated=estimated,
        cache_hit_type=facts.cache_hit_type,
    )
