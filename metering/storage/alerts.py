"""Budget alerts in the database: the webhooks (``budget_alerts``) and their outbox
(``budget_alert_events``), README Budget alerts.

``note_crossings`` runs inside the settlement's transaction (``storage.budget_batch``),
only for budgets the lock found with an alert: an event per threshold the settlement's
spend crossed, once per (alert, budget, threshold, period start) by the unique constraint
(``ON CONFLICT DO NOTHING``). ``claim_due`` hands the deliverer what is due, each event
leased (``next_attempt_at`` moved past the send's timeout) so that another process skips
it (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer at a time); ``finish_attempt``
marks it delivered, or due again after a backoff, or failed after the last attempt.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, insert, select, update

from metering.core.alerts import (
    FORECAST_PCT,
    PAYLOADS,
    AlertEvent,
    crossed_thresholds,
    event_kind,
    forecast_crossed,
    format_thresholds,
    parse_thresholds,
)
from metering.core.money import format_usd
from metering.errors import InvalidInput, NotFound
from metering.storage.budget_rows import BudgetRow, begin_write, load_budgets
from metering.storage.compiled import insert_for
from metering.storage.models import Budget, BudgetAlert, BudgetAlertEvent
from metering.storage.owners import owner_names

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
TEST = "test"


@dataclass(frozen=True, slots=True)
class AlertInfo:
    alert_id: int
    budget_id: int
    owner_type: str
    owner: str
    url: str
    thresholds: tuple[int, ...]
    payload: str
    forecast: bool
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.alert_id,
            "owner_type": self.owner_type,
            "owner": self.owner,
            "url": self.url,
            "at": format_thresholds(self.thresholds),
            "payload": self.payload,
            "forecast": self.forecast,
            "created_at": self.created_at.isoformat(timespec="seconds") + "Z",
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed event and where and how to send it."""

    event: AlertEvent
    url: str
    payload: str
    secret: str
    attempts: int  # including this one


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
        raise InvalidInput(f"an alert URL is an http:// or https:// URL, not {url!r}")
    return url


def add_alert(
    conn: Connection,
    *,
    owner_type: str,
    owner_id: int,
    url: str,
    thresholds: str,
    payload: str,
    secret: str,
    now: datetime,
    forecast: bool = False,
    model_pattern: str = "",
) -> int:
    """A new webhook of the owner's budget (the one narrowed to ``model_pattern``, ''
    for the one of every model); its id. The budget must exist."""
    pcts = parse_thresholds(thresholds)
    if payload not in PAYLOADS:
        raise InvalidInput(f"an alert payload is json or slack, not {payload!r}")
    if not secret or len(secret) > 200:
        raise InvalidInput("an alert secret is 1 to 200 characters")
    query = select(Budget.id).where(
        Budget.owner_type == owner_type,
        Budget.owner_id == owner_id,
        Budget.model_pattern == model_pattern,
    )
    budget_id = conn.execute(query).scalar()
    if budget_id is None:
        narrowed = f" for models {model_pattern!r}" if model_pattern else ""
        raise NotFound(
            f"the {owner_type} has no budget{narrowed} to watch: set one first with "
            "metering budgets set"
        )
    values = {
        "budget_id": budget_id,
        "url": check_url(url),
        "thresholds": format_thresholds(pcts),
        "payload": payload,
        "secret": secret,
        "forecast": forecast,
        "created_at": now,
    }
    return int(conn.execute(insert(BudgetAlert).values(values).returning(BudgetAlert.id)).one()[0])


def list_alerts(conn: Connection) -> list[AlertInfo]:
    query = (
        select(BudgetAlert, Budget.owner_type, Budget.owner_id)
        .join(Budget, Budget.id == BudgetAlert.budget_id)
        .order_by(BudgetAlert.id)
    )
    rows = conn.execute(query).all()
    names = owner_names(conn, [(r.owner_type, r.owner_id) for r in rows])
    return [
        AlertInfo(
            alert_id=r.id,
            budget_id=r.budget_id,
            owner_type=r.owner_type,
            owner=names[(r.owner_type, r.owner_id)],
            url=r.url,
            thresholds=parse_thresholds(r.thresholds),
            payload=r.payload,
            forecast=r.forecast,
            created_at=r.created_at,
        )
        for r in rows
    ]


def remove_alert(conn: Connection, alert_id: int) -> None:
    """Delete the alert and its events."""
    _alert(conn, alert_id)
    conn.execute(delete(BudgetAlertEvent).where(BudgetAlertEvent.alert_id == alert_id))
    conn.execute(delete(BudgetAlert).where(BudgetAlert.id == alert_id))


def _alert(conn: Connection, alert_id: int) -> Any:
    row = conn.execute(select(BudgetAlert).where(BudgetAlert.id == alert_id)).first()
    if row is None:
        raise NotFound(f"no alert {alert_id} (see metering alerts list)")
    return row


def alerted_budgets(conn: Connection, budget_ids: Iterable[int]) -> frozenset[int]:
    """The budgets among these with at least one alert."""
    ids = sorted(set(budget_ids))
    if not ids:
        return frozenset()
    query = select(BudgetAlert.budget_id).where(BudgetAlert.budget_id.in_(ids)).distinct()
    return frozenset(int(i) for i in conn.execute(query).scalars())


def note_crossings(
    conn: Connection, changes: Sequence[tuple[BudgetRow, int]], *, now: datetime
) -> int:
    """In the settlement's transaction: for each (locked row, its spent before), an event
    per threshold of each of its alerts that the new spend crossed; how many were new."""
    by_budget = {row.id: (row, before) for row, before in changes}
    a = BudgetAlert
    query = select(a.id, a.budget_id, a.thresholds, a.forecast).where(
        a.budget_id.in_(sorted(by_budget))
    )
    events: list[dict[str, Any]] = []
    for alert_id, budget_id, thresholds, forecast in conn.execute(query).all():
        row, before = by_budget[int(budget_id)]
        projected = (
            forecast_crossed(limit_nano=row.limit_nano, before_nano=before,
                             after_nano=row.spent_nano, window=row.window, now=now)
            if forecast
            else None
        )  # fmt: skip
        if projected is not None:
            values = _event_values(alert_id, row, kind="forecast", pct=FORECAST_PCT,
                                   start=row.period_start, now=now)  # fmt: skip
            events.append(values | {"forecast_nano": projected})
        for pct in crossed_thresholds(
            parse_thresholds(thresholds),
            limit_nano=row.limit_nano,
            before_nano=before,
            after_nano=row.spent_nano,
        ):
            kind, start = event_kind(pct), row.period_start
            events.append(_event_values(alert_id, row, kind=kind, pct=pct, start=start, now=now))
    written = 0
    postgres = conn.dialect.name == "postgresql"
    for values in events:
        stmt = (
            insert_for(postgres, BudgetAlertEvent.__table__)
            .values(values)
            .on_conflict_do_nothing(
                index_elements=["alert_id", "budget_id", "threshold_pct", "period_start"]
            )
            .returning(BudgetAlertEvent.id)
        )
        written += conn.execute(stmt).first() is not None
    return written


def _event_values(
    alert_id: int, row: BudgetRow, *, kind: str, pct: int, start: datetime, now: datetime
) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "alert_id": alert_id,
        "budget_id": row.id,
        "kind": kind,
        "threshold_pct": pct,
        "period_start": start,
        "next_reset": row.window[1],
        "spent_nano": row.spent_nano,
        "limit_nano": row.limit_nano,
        "created_at": now,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
    }


def add_test_event(conn: Connection, alert_id: int, *, now: datetime) -> str:
    """A test event of the alert (its budget as it stands), due now; its event id."""
    alert = _alert(conn, alert_id)
    (row,) = load_budgets(conn, [alert.budget_id])
    values = _event_values(alert_id, row, kind=TEST, pct=0, start=now, now=now)
    conn.execute(insert(BudgetAlertEvent).values(values))
    return str(values["event_id"])


def has_due(conn: Connection, *, now: datetime) -> bool:
    """Whether an event is due (a read: the deliverer's poll takes no write lock)."""
    e = BudgetAlertEvent
    query = select(e.id).where(e.status == PENDING, e.next_attempt_at <= now).limit(1)
    return conn.execute(query).first() is not None


def claim_due(
    conn: Connection,
    *,
    now: datetime,
    lease_seconds: float,
    limit: int = 20,
    event_ids: Sequence[str] | None = None,
) -> list[Delivery]:
    """Pending events due at ``now`` (oldest first), each leased for ``lease_seconds``
    and its attempt counted; commit right after, then send. ``event_ids``: only these."""
    begin_write(conn)
    e = BudgetAlertEvent
    query = select(e.id).where(e.status == PENDING, e.next_attempt_at <= now)
    if event_ids is not None:
        query = query.where(e.event_id.in_(list(event_ids)))
    query = query.order_by(e.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = [int(i) for i in conn.execute(query).scalars()]
    if not ids:
        return []
    lease = now + timedelta(seconds=lease_seconds)
    conn.execute(
        update(e).where(e.id.in_(ids)).values(attempts=e.attempts + 1, next_attempt_at=lease)
    )
    alert = (BudgetAlert.url, BudgetAlert.payload, BudgetAlert.secret)
    owner = (Budget.owner_type, Budget.owner_id, Budget.period)
    rows = conn.execute(
        select(e, *alert, *owner)
        .join(BudgetAlert, BudgetAlert.id == e.alert_id)
        .join(Budget, Budget.id == e.budget_id)
        .where(e.id.in_(ids))
        .order_by(e.id)
    ).all()
    names = owner_names(conn, [(r.owner_type, r.owner_id) for r in rows])
    return [
        Delivery(
            event=AlertEvent(
                event_id=r.event_id,
                kind=r.kind,
                alert_id=r.alert_id,
                threshold_pct=r.threshold_pct,
                owner_type=r.owner_type,
                owner=names[(r.owner_type, r.owner_id)],
                period=r.period,
                period_start=r.period_start,
                next_reset=r.next_reset,
                spent_nano=r.spent_nano,
                limit_nano=r.limit_nano,
                created_at=r.created_at,
                forecast_nano=r.forecast_nano,
            ),
            url=r.url,
            payload=r.payload,
            secret=r.secret,
            attempts=r.attempts,
        )
        for r in rows
    ]


def finish_attempt(
    conn: Connection,
    event_id: str,
    *,
    now: datetime,
    http_status: int | None,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    """The outcome of one send: delivered (``error`` None), due again at ``retry_at``, or
    failed for good (``retry_at`` None)."""
    e = BudgetAlertEvent
    values: dict[str, Any] = {"last_status": http_status, "last_error": error}
    if error is None:
        values |= {"status": DELIVERED, "delivered_at": now}
    elif retry_at is not None:
        values |= {"next_attempt_at": retry_at}
    else:
        values |= {"status": FAILED}
    conn.execute(update(e).where(e.event_id == event_id, e.status == PENDING).values(values))


def alert_history(
    conn: Connection, *, alert_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest events (of one alert, or all), newest first, as ``alerts history`` shows."""
    e = BudgetAlertEvent
    query = select(e).order_by(e.id.desc()).limit(limit)
    if alert_id is not None:
        _alert(conn, alert_id)
        query = query.where(e.alert_id == alert_id)
    out = []
    for r in conn.execute(query).all():
        out.append(
            {
                "alert_id": r.alert_id,
                "event_id": r.event_id,
                "kind": r.kind,
                "threshold": r.threshold_pct,
                "spent": format_usd(r.spent_nano),
                "limit": format_usd(r.limit_nano),
                "forecast": None if r.forecast_nano is None else format_usd(r.forecast_nano),
                "period_start": _iso(r.period_start),
                "created_at": _iso(r.created_at),
                "status": r.status,
                "attempts": r.attempts,
                "delivered_at": _iso(r.delivered_at),
                "last_status": r.last_status,
                "last_error": r.last_error,
            }
        )
    return out


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds") + "Z"
