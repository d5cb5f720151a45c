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

The returned hook runs in the recorder's transaction, after the record's insert:
``storage.budgets.settle`` replaces the reservation with the record's ``total_cost``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from metering.config import Settings
from metering.core.budget import reservation_nano, search_queries_bound_for, shape_of_request
from metering.errors import DatabaseUnavailable, InvalidInput, RequestRefused
from metering.gateway.admission import Admission, RequestInfo
from metering.storage.budget_rows import applicable_budget_ids
from metering.storage.budgets import Released, budget_status, release_expired, reserve, settle
from metering.storage.keys import KeyInfo

log = logging.getLogger("metering.budgets")

EXPIRY_MARGIN_SECONDS = 300
DEADLOCK_RETRIES = 3  # PostgreSQL may pick a reserve as a deadlock victim; it is retried


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
            await asyncio.to_thread(self._reserve, key, info)
        except SQLAlchemyError as exc:
            log.error("request %s: budget reservation failed: %s", info.request_id, exc)
            raise DatabaseUnavailable(f"budget reservation failed: {exc}") from None
        return Admission(settle=settle_record)

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
        """Release every expired reservation (run at startup and now and then)."""
        with self._engine.begin() as conn:
            return release_expired(conn, now=_utcnow())


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
    return {"key": key.name, "budgets": [s.as_dict() for s in statuses]}
