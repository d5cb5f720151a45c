"""Budget alerts and their outbox (README, Budget alerts)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from metering.storage.models.base import Base


class BudgetAlert(Base):
    """A webhook told when its budget's spend crosses one of ``thresholds`` (README,
    Budget alerts). ``secret`` signs each body (HMAC-SHA256): kept, not hashed."""

    __tablename__ = "budget_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    thresholds: Mapped[str] = mapped_column(String(200))  # "50,80,100": % of the limit
    payload: Mapped[str] = mapped_column(String(16))  # json | slack
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    # Also tell when the period is on course to pass the limit (``core.alerts.forecast_nano``).
    forecast: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class BudgetAlertEvent(Base):
    """The alerts' outbox: an event is written in the transaction of the settlement that
    crossed its threshold (once per alert, budget, threshold and period: the unique
    constraint), then delivered at least once by ``gateway.alert_delivery``."""

    __tablename__ = "budget_alert_events"
    __table_args__ = (
        # Named: the convention's name would pass PostgreSQL's 63 characters.
        UniqueConstraint(
            "alert_id",
            "budget_id",
            "threshold_pct",
            "period_start",
            name="uq_budget_alert_events_once",
        ),
        Index("ix_budget_alert_events_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)  # x-metering-event-id
    alert_id: Mapped[int] = mapped_column(ForeignKey("budget_alerts.id", ondelete="CASCADE"))
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # threshold | limit | forecast | test
    threshold_pct: Mapped[int] = mapped_column(Integer)  # 0 for a test, -1 for a forecast
    period_start: Mapped[datetime] = mapped_column(DateTime())
    next_reset: Mapped[datetime | None] = mapped_column(DateTime())
    spent_nano: Mapped[int] = mapped_column(BigInteger)
    limit_nano: Mapped[int] = mapped_column(BigInteger)
    forecast_nano: Mapped[int | None] = mapped_column(BigInteger)  # a forecast's projection
    created_at: Mapped[datetime] = mapped_column(DateTime())
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime())  # also a claim's lease
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(Text)
