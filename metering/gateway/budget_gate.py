"""Budgets at the gateway: the ``Admitter`` that reserves before and settles after.

``BudgetGate.admit`` (before anything goes upstream):

1. every request goes to the gateway's single writer, also when no budget applies:
   that round trip is what proves the database reachable before anything is sent
   upstream (fail closed, 503). A key cached (``KeyCache``) with no budget and no
   rate limit skips only the worst-case computation; if the writer finds a budget
   after all (created within ``cache_ttl``), the request is decided again with it;
2. the writer (a ``RecordWriter`` lane) decides requests queued together in ONE transaction
   (``storage.ledger.admit``: the budgets of their owners locked in id
   order, each request decided in turn against ``spent + reserved + amount ≤ limit``
   in memory under that lock), and each waits for its own decision:

   * a key with ``rpm_limit``/``tpm_limit`` is counted in its rate window first
     (``gateway.rate_limits``; 429 ``rate_limited`` with ``Retry-After``); a request
     then refused for its budget gives its estimated tokens back;
   * no budget applies → admitted; else every model the request may be served by
     (``model`` and its ``fallbacks``) needs a price (else 403 ``model_unpriced``) and a
     bounded worst case (else 400); the largest worst case is reserved in every
     applicable budget (402 ``budget_exceeded`` naming the refusing budget, its limit,
     spent, reserved and reset time). The reservation expires ``ttl_seconds`` after
     the request started (default: the upstream timeout plus
     ``EXPIRY_MARGIN_SECONDS``); any later reservation on the same budgets, or
     ``sweep()``, gives an expired one back.

Where the atomicity comes from: on SQLite, the batch is one write transaction of the
process's only writer thread (``BEGIN IMMEDIATE``; other processes queue on the busy
timeout); on PostgreSQL, ``SELECT … ORDER BY id FOR UPDATE`` row locks held to the
commit — several processes lock budgets in the same order, so none can overspend or
deadlock (a deadlock victim is retried).

Every admitted request also gets its ``calls_in_flight`` row in that same transaction
(one multi-row INSERT per batch, ``storage.in_flight``), under the id of this serving
process (``liveness.ServingProcess.ensure_alive``): what a sweep needs to record the call
as ``interrupted`` if the process dies while it is in flight. The recorder's batch
deletes it with the record's insert (``storage.ledger.record``).

``admit`` returns the call's ``Settlement`` (data: budgets, rate charge), which the
recorder's batch applies with the record (``storage.ledger.record``).
``sweep()`` (the app runs it at startup and every ``METERING_SWEEP_SECONDS``, after
recording the calls in flight of dead processes) releases expired reservations — spent
is not changed — and drops rate windows older than a few minutes.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from metering.config import Settings
from metering.core.budget import RequestShape, reservation_nano, search_queries_bound_for
from metering.core.interrupted import InFlightCall
from metering.core.money import format_usd
from metering.core.pricing import PriceVersion
from metering.core.rate_limits import RateCharge
from metering.errors import DatabaseUnavailable, InvalidInput, RequestRefused
from metering.gateway.admission import RequestInfo
from metering.gateway.liveness import ServingProcess
from metering.gateway.rate_limits import has_rate_limit, rate_ask, rate_refusal
from metering.gateway.recorder import Lane, RecordWriter
from metering.storage import ledger
from metering.storage.budget_batch import ReserveAsk, Unbounded
from metering.storage.budgets import Released, budget_status
from metering.storage.keys import KeyInfo
from metering.storage.ledger import AdmitAsk, RateAsk, RateRefused, Settlement

__all__ = ["BudgetGate", "budget_payload"]

log = logging.getLogger("metering.budgets")

EXPIRY_MARGIN_SECONDS = 300
DEADLOCK_RETRIES = 3  # PostgreSQL may pick a reservation batch as a deadlock victim: retried
RATE_WINDOWS_KEPT = timedelta(minutes=5)  # the sweep drops older rate-limit windows
WORST_CASES_KEPT = 4096  # remembered worst cases (see ``_reservation_nano``); then cleared
_ADMITTED = Settlement(budgets=True)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class _Ask:
    key: KeyInfo
    info: RequestInfo
    reserve: ReserveAsk
    rate: RateAsk | None  # what it counts in its key's rate window (if it has limits)
    unbounded: RequestRefused | None  # why the worst case is unknown (if it is)
    prompt_tokens: int  # estimated, for the call in flight (``core.interrupted``)
    output_tokens: int | None


class BudgetGate:
    """``Admitter`` enforcing the hard limits of key, team, customer, end-user and tag
    budgets (``storage.budget_locks.applicable``)."""

    def __init__(
        self,
        engine: Engine,
        *,
        ttl_seconds: int,
        writer: RecordWriter | None = None,
        process: ServingProcess | None = None,
    ) -> None:
        """Reservations are decided on ``writer``'s thread (the gateway's single writer;
        a writer of its own if none is given); with ``process`` (on the same writer),
        admitted calls are kept in flight."""
        self._engine = engine
        self._ttl = ttl_seconds
        self._writer = writer if writer is not None else RecordWriter(engine)
        self._lane: Lane[_Ask, _Decision] = self._writer.lane(self._decide_batch)
        self._process = process
        self._worst_cases: dict[tuple[RequestShape, int, str], tuple[PriceVersion, int]] = {}

    @classmethod
    def from_settings(
        cls,
        engine: Engine,
        settings: Settings,
        *,
        writer: RecordWriter | None = None,
        process: ServingProcess | None = None,
    ) -> BudgetGate:
        """Reservations outlive the longest upstream call by ``EXPIRY_MARGIN_SECONDS``."""
        ttl = int(settings.upstream_timeout) + EXPIRY_MARGIN_SECONDS
        return cls(engine, ttl_seconds=ttl, writer=writer, process=process)

    async def admit(self, key: KeyInfo, info: RequestInfo) -> Settlement:
        # Without budget (as cached) nor rate limit, the worst case is worked out only if
        # the writer finds a budget after all.
        lazy = info.has_budget is False and not has_rate_limit(key)
        charge = await self._writer.submit(self._lane, self._ask(key, info, lazy=lazy))
        if charge is WORST_CASE_NEEDED:
            charge = await self._writer.submit(self._lane, self._ask(key, info, lazy=False))
        assert not isinstance(charge, _WorstCaseNeeded)  # the second ask carries it
        if charge is None:
            return _ADMITTED
        return Settlement(budgets=True, rate=charge)

    def _ask(self, key: KeyInfo, info: RequestInfo, *, lazy: bool) -> _Ask:
        amount: int | None = None
        unbounded = None
        if not lazy:
            try:
                amount = self.worst_case_nano(info)
            except RequestRefused as exc:
                unbounded = exc
        owners = (key.id, key.team_id, key.customer_id)
        models = (info.requested_model, *info.fallbacks)
        reserve = ReserveAsk(
            info.request_id, owners, amount, info.started_at, models, info.attribution
        )
        rate = rate_ask(key, info, now=info.started_at) if has_rate_limit(key) else None
        prompt_tokens = info.shape.prompt_tokens(info.body)
        return _Ask(key, info, reserve, rate, unbounded, prompt_tokens, _output_bound(info))

    def worst_case_nano(self, info: RequestInfo) -> int:
        """The largest worst case over the requested model and its fallbacks."""
        models = [info.requested_model, *info.fallbacks]
        try:
            shape = info.shape.bounds(info.body)
        except InvalidInput as exc:
            raise RequestRefused(str(exc), status=400, error_type="invalid_request_error") from None
        amounts = []
        for model in models:
            provider, _, name = model.partition("/")
            version = info.prices.lookup(provider, name, info.started_at.date())
            if version is None:
                raise RequestRefused(
                    f"{model} has no price, so a request to it cannot be checked against the "
                    "key's budget; add its price (`metering prices import`) or use a priced "
                    "model",
                    status=403,
                    error_type="model_unpriced",
                )
            try:
                amounts.append(self._reservation_nano(shape, version, model))
            except InvalidInput as exc:
                raise RequestRefused(
                    str(exc), status=400, error_type="invalid_request_error"
                ) from None
        return max(amounts)

    def _reservation_nano(self, shape: RequestShape, version: PriceVersion, model: str) -> int:
        """``reservation_nano``, remembered for the exact same shape, price version (the
        same object: a reloaded price book misses) and model — a pure function of them,
        so a hit reserves exactly what computing it would (≈ 10 % of a request's CPU)."""
        memo_key = (shape, id(version), model)
        hit = self._worst_cases.get(memo_key)
        if hit is not None and hit[0] is version:
            return hit[1]
        bound = search_queries_bound_for(model)
        amount = reservation_nano(shape, version, search_queries_bound=bound)
        if len(self._worst_cases) >= WORST_CASES_KEPT:
            self._worst_cases.clear()
        # The version is kept with its amount: its id cannot be reused while remembered.
        self._worst_cases[memo_key] = (version, amount)
        return amount

    # ---- on the writer's thread ------------------------------------------------------

    def _decide_batch(self, asks: list[_Ask]) -> list[_Decision | BaseException]:
        """One transaction deciding every ask (retried whole if PostgreSQL picks it as a
        deadlock victim); a database failure refuses them all with 503."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                assert self._writer is not None
                process_id = self._process.ensure_alive() if self._process else None
                with self._writer.begin() as conn:
                    return self._decide(conn, asks, process_id)
            except DBAPIError as exc:
                if attempt < DEADLOCK_RETRIES and _is_deadlock(exc):
                    continue
                return [_unavailable(asks, exc)] * len(asks)
            except SQLAlchemyError as exc:
                return [_unavailable(asks, exc)] * len(asks)
        raise AssertionError("unreachable")

    def _decide(
        self, conn: Connection, asks: list[_Ask], process_id: int | None
    ) -> list[_Decision | BaseException]:
        admitted = ledger.admit(
            conn,
            [AdmitAsk(a.reserve, a.rate, _in_flight(a, process_id)) for a in asks],
            now=_utcnow(),
            ttl_seconds=self._ttl,
        )
        return [_decision(ask, out) for ask, out in zip(asks, admitted, strict=True)]

    def sweep(self) -> Released:
        """Release every expired reservation (spent unchanged) and drop old rate windows."""
        now = _utcnow()
        with self._engine.begin() as conn:
            released = ledger.sweep(conn, now=now, rate_windows_before=now - RATE_WINDOWS_KEPT)
        if released.reservations:
            log.warning(
                "released %d expired budget reservation(s) of $%s (requests of a crashed "
                "or stuck process)",
                released.reservations,
                format_usd(released.amount_nano),
            )
        return released


class _WorstCaseNeeded(enum.Enum):
    """A budget applies to a request decided without its worst case (see ``admit``)."""

    TOKEN = "worst case needed"


WORST_CASE_NEEDED = _WorstCaseNeeded.TOKEN
_Decision = RateCharge | None | _WorstCaseNeeded  # what the writer decides for an ask


def _decision(ask: _Ask, out: ledger.Admitted) -> _Decision | BaseException:
    """What the writer decided for an ask → its charge (admitted) or its refusal."""
    decision = out.decision
    if isinstance(decision, Unbounded):  # a budget applies: its worst case is needed
        return WORST_CASE_NEEDED if ask.unbounded is None else ask.unbounded
    if isinstance(decision, RateRefused):
        return rate_refusal(ask.key, decision.used, now=ask.info.started_at)
    if isinstance(decision, Exception):
        return decision
    if decision.refusal is not None:
        message = decision.refusal.message()
        return RequestRefused(message, status=402, error_type="budget_exceeded")
    return out.rate


def _unavailable(asks: list[_Ask], exc: SQLAlchemyError) -> DatabaseUnavailable:
    log.error("%d request(s): budget reservation failed: %s", len(asks), exc)
    return DatabaseUnavailable(f"budget reservation failed: {exc}")


def _output_bound(info: RequestInfo) -> int | None:
    """The call's output bound: ``max_tokens`` × choices × prompts, else the max output
    tokens of the requested model (the largest of its fallbacks' if it has none known)."""
    known = []
    for model in (info.requested_model, *info.fallbacks):
        provider, _, name = model.partition("/")
        version = info.prices.lookup(provider, name, info.started_at.date())
        if version is not None and version.max_output_tokens is not None:
            known.append(version.max_output_tokens)
            if model == info.requested_model:
                break
    try:
        return info.shape.output_bound(info.body, max_output_tokens=max(known) if known else None)
    except InvalidInput:  # refused as a 400 if a budget applies; unbounded otherwise
        return None


def _in_flight(ask: _Ask, process_id: int | None) -> InFlightCall | None:
    """The call in flight an admitted ask leaves (its reservation filled in by the
    ledger); none without a serving process."""
    if process_id is None:
        return None
    info, key = ask.info, ask.key
    return InFlightCall(
        request_id=info.request_id,
        process_id=process_id,
        key_id=key.id,
        team_id=key.team_id,
        customer_id=key.customer_id,
        requested_model=info.requested_model,
        request_type=info.shape.request_type,
        stream=info.stream,
        started_at=info.started_at,
        prompt_tokens=ask.prompt_tokens,
        output_tokens=ask.output_tokens,
        reserved_nano=None,
        end_user=info.attribution.end_user,
        end_user_scope=info.attribution.end_user_scope,
        tags=info.attribution.tags_text,
    )


def _is_deadlock(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


def budget_payload(conn: Connection, key: KeyInfo, *, now: datetime) -> dict[str, Any]:
    """The body of ``GET /v1/budget`` for ``key``: its budgets and its team's and customer's."""
    statuses = budget_status(
        conn, now=now, key_id=key.id, team_id=key.team_id, customer_id=key.customer_id
    )
    return {
        "key": key.name,
        "team": key.team,
        "customer": key.customer,
        "rate_limits": {"requests_per_minute": key.rpm_limit, "tokens_per_minute": key.tpm_limit},
        "budgets": [s.as_dict() for s in statuses],
    }
