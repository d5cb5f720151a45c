"""Per-key requests- and tokens-per-minute limits at the gateway (429 ``rate_limited``).

The algorithm and its guarantees are in ``metering.core.rate_limits`` (fixed one-minute
windows, tokens estimated at admission and corrected to the actual usage); the
counters are rows of the shared database (``storage.rate_limits``), so the limits hold
across every ``metering serve`` process and worker on one database. Keys without
``rpm_limit``/``tpm_limit`` never touch them.
"""

from __future__ import annotations

from datetime import datetime

from metering.core.rate_limits import (
    WindowUsage,
    estimate_tokens,
    refusal_message,
    retry_after_seconds,
    window_start,
)
from metering.errors import InvalidInput, RequestRefused
from metering.gateway.admission import RequestInfo
from metering.storage.keys import KeyInfo
from metering.storage.ledger import RateAsk


def has_rate_limit(key: KeyInfo) -> bool:
    return key.rpm_limit is not None or key.tpm_limit is not None


def rate_ask(key: KeyInfo, info: RequestInfo, *, now: datetime) -> RateAsk:
    """What the request counts in its key's current window (``storage.ledger.admit``
    counts it, or refuses it); 400 if its shape cannot be estimated."""
    try:
        tokens = estimate_tokens(info.shape.bounds(info.body))
    except InvalidInput as exc:
        raise RequestRefused(str(exc), status=400, error_type="invalid_request_error") from None
    return RateAsk(key.id, window_start(now), key.rpm_limit, key.tpm_limit, tokens)


def rate_refusal(key: KeyInfo, used: WindowUsage, *, now: datetime) -> RequestRefused:
    """The 429 ``rate_limited`` of a request its key's window refused."""
    retry_after = retry_after_seconds(now)
    limit = "rpm" if key.rpm_limit is not None and used.requests >= key.rpm_limit else "tpm"
    message = refusal_message(
        key_name=key.name,
        limit=limit,
        rpm=key.rpm_limit,
        tpm=key.tpm_limit,
        used=used,
        retry_after=retry_after,
    )
    return RequestRefused(message, status=429, error_type="rate_limited", retry_after=retry_after)
