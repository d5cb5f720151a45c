"""The budget hook: what the gateway asks before it forwards a request.

The gateway calls ``await admission.admit(key, info)`` after the key and the body
are valid and before anything is sent upstream. ``admit`` either

* raises ``metering.errors.RequestRefused(message, status=…, error_type=…)`` —
  e.g. 402 ``budget_exceeded``, 429 ``rate_limited``, 403 ``model_unpriced``;
  the client gets that SPEC §4 error, nothing is sent upstream, nothing is
  recorded; or raises ``DatabaseUnavailable`` → 503 ``metering_unavailable``;
* or returns a ``storage.ledger.Settlement``: how the call's record will settle, as
  data (its budgets: reservations released and cost charged; its rate window corrected
  to the actual tokens). From then on the request is forwarded and gets exactly one
  usage record, whatever happens (success, upstream error, timeout, client gone),
  which ``storage.ledger.record`` inserts and settles in one transaction — only if it
  was actually inserted, so a replayed write does not settle twice. If that
  transaction fails, the record and its settlement are journaled (``storage.journal``)
  and replayed later, settling the same way.

An admitter that reserves is made with the gateway's ``RecordWriter`` (``create_app``
passes it to ``BudgetGate.from_settings``): its transactions then go through the same
single writer thread (``RecordWriter.lane``/``submit``).

``Admitter.sweep()`` (blocking; the gateway runs it in a thread at startup and
every ``METERING_SWEEP_SECONDS``) releases what crashed processes left behind.

``AdmitAll`` (the default) admits every request and settles nothing: budgets
and rate limits are not enforced until a real admission is plugged in through
``create_app(..., admission=…)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from metering.core.attribution import NO_ATTRIBUTION, Attribution
from metering.core.pricing import PriceBook
from metering.gateway.shapes import ApiShape
from metering.storage.keys import KeyInfo
from metering.storage.ledger import NO_SETTLEMENT, Settlement


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: str  # the usage record's request_id
    started_at: datetime  # naive UTC; the record's started_at
    requested_model: str  # provider/model
    shape: ApiShape  # its API's adapter: bounds its usage (``gateway.shapes``)
    fallbacks: tuple[str, ...]  # the other models that may serve it
    stream: bool
    body: Mapping[str, Any]  # the parsed JSON body (max_tokens, n, best_of, prompt…)
    body_bytes: int
    prices: PriceBook  # the gateway's cached price book
    # Whether a budget applies to the key, its team or customer, as cached with the key
    # (at most ``cache_ttl`` stale); None: not known.
    has_budget: bool | None = None
    # Its end user and tags (README, Attribution), known before the upstream call.
    attribution: Attribution = NO_ATTRIBUTION


class Admitter(Protocol):
    async def admit(self, key: KeyInfo, info: RequestInfo) -> Settlement: ...

    def sweep(self) -> object: ...


class AdmitAll:
    """Admits everything; the placeholder until budgets are plugged in."""

    async def admit(self, key: KeyInfo, info: RequestInfo) -> Settlement:
        return NO_SETTLEMENT

    def sweep(self) -> None:
        return None
