"""Budgets at the gateway: the ``Admitter`` that reserves before and settles after.

``BudgetGate.admit`` (before anything goes upstream):

1. no budget applies to the key, its team or its customer → admitted; the settle
   hook still runs, so a budget created while the request is in flight counts it;
2. otherwise every model the request may be served by (``model`` and its
   ``fallbacks``) needs a price (else 403 ``model_unpriced``) and a bounded worst
   case (else 400); the largest worst case is reserved atomically in every
   applicable budget (402 ``budget_exceeded`` naming the refusing budget, its limit,
   spent, reserved and reset time). The reservation expires ``ttl_seconds`` after the
   request started (default: the upstream timeout plus ``EXPIRY_MARGIN_SECONDS``), so
   a crashed process cannot hold budget forever; any later ``reserve`` on the same
   budgets, or ``sweep()``, gives it back.

Before either, a key with ``rpm_limit``/``tpm_limit`` is counted in its rate window
(``gateway.rate_limits``; 429 ``rate_limited`` with ``Retry-After``) in the same
thread hop; a request then refused for its budget gives its estimated tokens back
(its request still counts: it reached the gateway).

The returned hooks run in the recorder's batch transaction: ``prepare_batch`` first
locks every budget the batch will settle (one query, ascending id) and the rate
windows it will correct, so settling many records cannot deadlock against a
concurrent ``reserve`` (which also locks in ascending id order); then, after each
record's insert, ``storage.budgets.settle`` replaces its reservation with the
record's ``total_cost`` and the rate window's token estimate with its actual tokens.

``sweep()`` (the app runs it at startup and every ``SWEEP_SECONDS``) releases expired
reservations — spent is not changed — and drops rate windows older than a few minutes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from metering.config import Settings
from metering.core.budget import reservation_nano, search_queries_bound_for, shape_of_request
from metering.core.money import format_usd
from metering.core.rate_limits import window_start
from metering.errors import DatabaseUnavailable, InvalidInput, RequestRefused
from metering.gateway.admission import Admission, RequestInfo
from metering.gateway.rate_limits import RateCharge, has_rate_limit, take_rate
from metering.storage.budget_rows import applicable_budget_ids, begin_write, lock_budgets
from metering.storage.budgets import Released, budget_status, release_expired, reserve, settle
from metering.storage.keys import KeyInfo
from metering.storage.models import Budget, Reservation
from metering.storage.rate_limits import delete_windows_before, lock_windows

log = logging.getLogger("metering.budgets")

EXPIRY_MARGIN_SECONDS = 300
DEADLOCK_RETRIES = 3  # PostgreSQL may pick a reserve as a deadlock victim; it is retried
RATE_WINDOWS_KEPT = timedelta(minutes=5)  # the sweep drops older rate-limit windows


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def settle_record(conn: Connection, record: Mapping[str, Any]) -> None:
    """The settle hook: the record (just inserted in ``conn``'s transaction) → budgets."""
    settle(
        conn,
        request_id=record["request_id"],
        key_id=record["key_id"],
        team_id=record.get("team_id"),
        customer_id=record.get("customer_id"),
        actual_nano=int(record.get("total_cost") or 0),
        started_at=record["started_at"],
        now=_utcnow(),
    )


class BudgetGate:
    """``Admitter`` enforcing the hard limits of key, team and customer budgets."""

    def __init__(self, engine: Engine, *, ttl_seconds: int) -> None:
        self._engine = engine
        self._ttl = ttl_seconds

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> BudgetGate:
        """Reservations outlive the longest upstream call by ``EXPIRY_MARGIN_SECONDS``."""
        ttl = int(settings.upstream_timeout) + EXPIRY_MARGIN_SECONDS
        return cls(engine, ttl_seconds=ttl)

    async def admit(self, key: KeyInfo, info: RequestInfo) -> Admission:
        try:
            charge = await asyncio.to_thread(self._admit, key, info)
        except SQLAlchemyError as exc:
            log.error("request %s: admission failed: %s", info.request_id, exc)
            raise DatabaseUnavailable(f"budget reservation failed: {exc}") from None
        hook = settle_record if charge is None else _SettleWithRate(charge).__call__
        return Admission(settle=hook, prepare=prepare_batch)

    def _admit(self, key: KeyInfo, info: RequestInfo) -> RateCharge | None:
        charge = None
        if has_rate_limit(key):
            with self._engine.begin() as conn:
                charge = take_rate(conn, key, info.body, now=info.started_at)
        try:
            self._reserve(key, info)
        except RequestRefused:
            if charge is not None:
                with self._engine.begin() as conn:
                    charge.give_back_tokens(conn)
            raise
        return charge

    def worst_case_nano(self, info: RequestInfo) -> int:
        """The largest worst case over the requested model and its fallbacks."""
        models = [info.requested_model, *_fallbacks(info.body)]
        try:
            shape = shape_of_request(info.body)
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
                bound = search_queries_bound_for(model)
                amounts.append(reservation_nano(shape, version, search_queries_bound=bound))
            except InvalidInput as exc:
                raise RequestRefused(
                    str(exc), status=400, error_type="invalid_request_error"
                ) from None
        return max(amounts)

    def _reserve(self, key: KeyInfo, info: RequestInfo) -> None:
        with self._engine.connect() as conn:
            ids = applicable_budget_ids(
                conn, key_id=key.id, team_id=key.team_id, customer_id=key.customer_id
            )
        if not ids:
            return
        amount = self.worst_case_nano(info)
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                with self._engine.begin() as conn:
                    result = reserve(
                        conn,
                        request_id=info.request_id,
                        key_id=key.id,
                        team_id=key.team_id,
                        customer_id=key.customer_id,
                        amount_nano=amount,
                        now=info.started_at,
                        ttl_seconds=self._ttl,
                    )
                break
            except DBAPIError as exc:
                if attempt == DEADLOCK_RETRIES or not _is_deadlock(exc):
                    raise
        if result.refusal is not None:
            raise RequestRefused(result.refusal.message(), status=402, error_type="budget_exceeded")

    def sweep(self) -> Released:
        """Release every expired reservation (spent unchanged) and drop old rate windows."""
        now = _utcnow()
        with self._engine.begin() as conn:
            released = release_expired(conn, now=now)
        with self._engine.begin() as conn:
            delete_windows_before(conn, before=now - RATE_WINDOWS_KEPT)
        if released.reservations:
            log.warning(
                "released %d expired budget reservation(s) of $%s (requests of a crashed "
                "or stuck process)",
                released.reservations,
                format_usd(released.amount_nano),
            )
        return released


@dataclass(frozen=True, slots=True)
class _SettleWithRate:
    charge: RateCharge

    def __call__(self, conn: Connection, record: Mapping[str, Any]) -> None:
        settle_record(conn, record)
        self.charge.settle(conn, record)


def prepare_batch(conn: Connection, records: Sequence[Mapping[str, Any]]) -> None:
    """Lock, before the batch inserts anything, every budget its settlements will touch
    (applicable to any of its records, or holding one of their reservations) in
    ascending id order, then the rate windows they correct in (key, window) order.
    ``reserve`` locks budgets in the same order, so the two cannot deadlock. (A budget
    created while the batch runs is locked later by its settle; PostgreSQL would then
    abort one side, and the recorder retries the batch record by record.)"""
    begin_write(conn)
    keys = {r["key_id"] for r in records}
    teams = {r["team_id"] for r in records if r.get("team_id") is not None}
    customers = {r["customer_id"] for r in records if r.get("customer_id") is not None}
    owners = [(Budget.owner_type == "key") & Budget.owner_id.in_(keys)]
    if teams:
        owners.append((Budget.owner_type == "team") & Budget.owner_id.in_(teams))
    if customers:
        owners.append((Budget.owner_type == "customer") & Budget.owner_id.in_(customers))
    ids = set(conn.execute(select(Budget.id).where(or_(*owners))).scalars())
    held = select(Reservation.budget_id).where(
        Reservation.request_id.in_([r["request_id"] for r in records])
    )
    ids.update(conn.execute(held).scalars())
    lock_budgets(conn, ids)
    lock_windows(conn, [(r["key_id"], window_start(r["started_at"])) for r in records])


def _fallbacks(body: Mapping[str, Any]) -> list[str]:
    value = body.get("fallbacks")
    if not isinstance(value, list):
        return []
    return [m for m in value if isinstance(m, str) and "/" in m]


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
