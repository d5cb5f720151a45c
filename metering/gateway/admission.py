"""The budget hook: what the gateway asks before it forwards a request.

The gateway calls ``await admission.admit(key, info)`` after the key and the body
are valid and before anything is sent upstream. ``admit`` either

* raises ``metering.errors.RequestRefused(message, status=…, error_type=…)`` —
  e.g. 402 ``budget_exceeded``, 429 ``rate_limited``, 403 ``model_unpriced``;
  the client gets that SPEC §4 error, nothing is sent upstream, nothing is
  recorded; or raises ``DatabaseUnavailable`` → 503 ``metering_unavailable``;
* or returns an ``Admission``. From then on the request is forwarded and gets
  exactly one usage record, whatever happens (success, upstream error, timeout,
  client gone). ``Admission.settle(conn, record)`` — if given — runs inside the
  SAME transaction as that record's insert, after it, and only if the record was
  actually inserted (a replayed write does not settle twice). It is where a
  reservation is replaced by ``record["total_cost"]`` (nano-USD). If ``settle``
  raises, neither the record nor the settlement is committed and the client gets
  503 ``metering_unavailable`` instead of the response.
  ``Admission.prepare(conn, records)`` — if given — runs once per recorder batch,
  in the batch's transaction, BEFORE any record is inserted, with the records of
  every request in the batch that carries this same hook (compared by identity).
  It is where every row the settle hooks will change is locked, in one fixed order
  (e.g. budgets by id), so a batch cannot deadlock against a concurrent ``admit``.
  It may return a ``BatchHook``: its ``finish(conn)`` runs after every settle hook of
  the batch, still in its transaction (settle hooks may leave their work to it, so a
  batch changes each budget row once).

An admitter that has an ``attach(writer)`` method is given the gateway's
``RecordWriter`` when the app is made: its own writes can then go through the same
single writer thread (``RecordWriter.lane``/``submit``).

``Admitter.sweep()`` (blocking; the gateway runs it in a thread at startup and
every ``METERING_SWEEP_SECONDS``) releases what crashed processes left behind.

``AdmitAll`` (the default) admits every request and settles nothing: budgets
and rate limits are not enforced until a real admission is plugged in through
``create_app(..., admission=…)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection

from metering.core.pricing import PriceBook
from metering.storage.journal import RateTag
from metering.storage.keys import KeyInfo


class BatchHook(Protocol):
    def finish(self, conn: Connection) -> None: ...


SettleHook = Callable[[Connection, Mapping[str, Any]], None]
PrepareHook = Callable[[Connection, Sequence[Mapping[str, Any]]], BatchHook | None]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: str  # the usage record's request_id
    started_at: datetime  # naive UTC; the record's started_at
    requested_model: str  # provider/model as sent
    request_type: str  # text_completion | chat_completion
    stream: bool
    body: Mapping[str, Any]  # the parsed JSON body (max_tokens, n, best_of, prompt…)
    body_bytes: int
    prices: PriceBook  # the gateway's cached price book
    # Whether a budget applies to the key, its team or customer, as cached with the key
    # (at most ``cache_ttl`` stale); None: not known.
    has_budget: bool | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    settle: SettleHook | None = None
    prepare: PrepareHook | None = None
    # What the hooks settle, as data a journaled record keeps (``storage.journal``): a
    # replay rebuilds the same hooks from it (``settlement.admission_for``).
    budgets: bool = False
    rate: RateTag | None = None


class Admitter(Protocol):
    async def admit(self, key: KeyInfo, info: RequestInfo) -> Admission: ...

    def sweep(self) -> object: ...


class AdmitAll:
    """Admits everything; the placeholder until budgets are plugged in."""

    async def admit(self, key: KeyInfo, info: RequestInfo) -> Admission:
        return Admission()

    def sweep(self) -> None:
        return None
