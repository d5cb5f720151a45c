"""The ledger's tables: owners (customers, teams, virtual keys), budgets and their
reservations, price versions, usage records and their daily rollup, settlement markers,
rate windows, serving processes and calls in flight."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from metering.core.attribution import END_USER_CHARS, END_USER_SCOPE_CHARS
from metering.core.records import (
    CACHE_HIT_TYPE_CHARS,
    MODEL_CHARS,
    PROVIDER_CHARS,
    REQUESTED_MODEL_CHARS,
    RESPONSE_ID_CHARS,
)
from metering.storage.models.base import Base, UsageColumns


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime())


class VirtualKey(Base):
    __tablename__ = "virtual_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    key_prefix: Mapped[str] = mapped_column(String(32))  # shown in listings: "sk-bf-ab12…"
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    allowed_models: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of patterns
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())


class Budget(Base):
    __tablename__ = "budgets"
    # One budget per owner, end user or tag, and model pattern (README, Budgets).
    __table_args__ = (
        UniqueConstraint("owner_type", "owner_id", "scope", "subject", "model_pattern"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # key | team | customer (owner_id: its id); tag (subject: the tag); end_user (scope:
    # the end users' "customer:<id>" | "key:<id>", subject: the end-user id); each_end_user
    # (scope: the customer's end users; the default every end user of it gets on first use)
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int] = mapped_column(Integer)  # 0 for tag and end-user budgets
    scope: Mapped[str] = mapped_column(String(32), default="", server_default="")
    subject: Mapped[str] = mapped_column(String(128), default="", server_default="")
    # '' = every model; else a pattern matched against the served provider/model
    model_pattern: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # an end-user budget created from an each_end_user default: the default's id
    template_id: Mapped[int | None] = mapped_column(Integer)
    limit_nano: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(32))  # daily|weekly|monthly|yearly|Nh|Nd|never
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    soft_pct: Mapped[int | None] = mapped_column(Integer)  # soft limit, % of limit
    period_start: Mapped[datetime] = mapped_column(DateTime())
    spent_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    soft_crossed_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (UniqueConstraint("request_id", "budget_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    amount_nano: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    expires_at: Mapped[datetime] = mapped_column(DateTime(), index=True)


class PriceVersionRow(Base):
    """A price version. ``prices import --replace`` never edits one: the row is marked
    ``replaced_at`` (its rates stay what the records pointing to it were billed with) and
    the correction is a new row, a new id; one live row per provider, model and date."""

    __tablename__ = "price_versions"
    __table_args__ = (
        Index(
            "uq_price_versions_live",
            "provider",
            "model",
            "effective_from",
            unique=True,
            sqlite_where=text("replaced_at IS NULL"),
            postgresql_where=text("replaced_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(300))
    effective_from: Mapped[date] = mapped_column(Date())
    mode: Mapped[str] = mapped_column(String(32), default="chat")
    rates: Mapped[str] = mapped_column(Text)  # JSON: name -> decimal string (USD per 1M tokens)
    tiers: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of tier objects
    max_input_tokens: Mapped[int | None] = mapped_column(Integer)
    max_output_tokens: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime())
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime())  # None: live
    replaced_by: Mapped[int | None] = mapped_column(Integer)  # the correction's id


class UsageRecord(UsageColumns, Base):
    """One row per request that reached the upstream (exactly once: ``request_id`` is unique)."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_started_at", "started_at"),
        Index("ix_usage_records_key_started", "key_id", "started_at"),
        # an end user's budget counts its records in a window (created on first use)
        Index("ix_usage_records_end_user_started", "end_user_scope", "end_user", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    response_id: Mapped[str | None] = mapped_column(String(RESPONSE_ID_CHARS))
    started_at: Mapped[datetime] = mapped_column(DateTime())
    ended_at: Mapped[datetime] = mapped_column(DateTime())
    key_id: Mapped[int] = mapped_column(ForeignKey("virtual_keys.id"))
    team_id: Mapped[int | None] = mapped_column(Integer)  # as they were at request time
    customer_id: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(PROVIDER_CHARS))  # served (after fallbacks)
    model: Mapped[str] = mapped_column(String(MODEL_CHARS))  # served
    requested_model: Mapped[str] = mapped_column(String(REQUESTED_MODEL_CHARS))  # as sent
    request_type: Mapped[str] = mapped_column(String(32))  # text_completion | chat_completion
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(32))  # success|upstream_error|timeout|cancelled|…
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    cache_hit_type: Mapped[str | None] = mapped_column(String(CACHE_HIT_TYPE_CHARS))

    # After the shared columns (sort_order=1), as the table has always had them.
    computed_cost: Mapped[int | None] = mapped_column(BigInteger, sort_order=1)  # None: no price
    reported_cost: Mapped[int | None] = mapped_column(BigInteger, sort_order=1)  # usage.cost
    # computed | reported | estimated | unpriced
    cost_source: Mapped[str] = mapped_column(String(16), sort_order=1)
    price_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("price_versions.id"), sort_order=1
    )
    error_message: Mapped[str | None] = mapped_column(Text, sort_order=1)
    # The usage was estimated (stream cut, usage missing or unusable): stays true when the
    # record is unpriced, so a later reprice still bills it as an estimate.
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False, sort_order=1)
    # Attribution (README, Attribution): the end-user id the client sent, whose end users
    # it names ("customer:<id>" or "key:<id>"), and the request's tags (sorted,
    # comma-joined; ``record_tags`` indexes them). None: none.
    end_user: Mapped[str | None] = mapped_column(String(END_USER_CHARS), sort_order=2)
    end_user_scope: Mapped[str | None] = mapped_column(String(END_USER_SCOPE_CHARS), sort_order=2)
    tags: Mapped[str | None] = mapped_column(Text, sort_order=2)


class DailyRollup(UsageColumns, Base):
    """Sums of usage_records per UTC day × key × team × customer × provider × model.

    ``team_id``/``customer_id`` use 0 for "none" so the natural key can be unique
    on every database (NULLs are distinct in unique indexes)."""

    __tablename__ = "daily_rollups"
    __table_args__ = (
        UniqueConstraint("day", "key_id", "team_id", "customer_id", "provider", "model"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date())
    key_id: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[int] = mapped_column(Integer, default=0)
    customer_id: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(PROVIDER_CHARS))
    model: Mapped[str] = mapped_column(String(MODEL_CHARS))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    # Records without a price (billed 0 until ``metering reprice``): shown beside amounts.
    unpriced: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class BudgetEvent(Base):
    """Something that happened to a budget once in a period (e.g. its soft limit was crossed)."""

    __tablename__ = "budget_events"
    __table_args__ = (UniqueConstraint("budget_id", "kind", "period_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # soft_limit_crossed
    period_start: Mapped[datetime] = mapped_column(DateTime())
    at: Mapped[datetime] = mapped_column(DateTime())
    spent_nano: Mapped[int] = mapped_column(BigInteger)
    limit_nano: Mapped[int] = mapped_column(BigInteger)


class RepriceAudit(Base):
    """One row per record whose cost ``metering reprice`` changed."""

    __tablename__ = "reprice_audits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("usage_records.id"), index=True)
    old_total_cost: Mapped[int] = mapped_column(BigInteger)
    new_total_cost: Mapped[int] = mapped_column(BigInteger)
    old_price_version_id: Mapped[int | None] = mapped_column(Integer)
    new_price_version_id: Mapped[int | None] = mapped_column(Integer)
    old_cost_source: Mapped[str] = mapped_column(String(16))
    new_cost_source: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(DateTime())


class BudgetSettlement(Base):
    """A request whose actual cost has been applied to its budgets: makes settling idempotent."""

    __tablename__ = "budget_settlements"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    settled_at: Mapped[datetime] = mapped_column(DateTime())


class RateWindow(Base):
    """Requests and tokens of one key in one fixed one-minute window (rate limits)."""

    __tablename__ = "rate_windows"

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class ServingProcess(Base):
    """A running ``metering serve`` worker: registered at startup, ``heartbeat_at`` refreshed
    every few seconds, deleted at a clean stop (see ``storage.in_flight``)."""

    __tablename__ = "serving_processes"
    # Never reuse an id (SQLite would, after the last row is deleted): a stalled process
    # whose row was forgotten must not heartbeat a newcomer's row as its own.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime())


class CallInFlight(Base):
    """An admitted request without its usage record yet: inserted in the transaction that
    admits it, deleted in the one that inserts its record. Left behind by a dead process,
    it becomes an ``interrupted`` record (``storage.ledger.record_interrupted``)."""

    __tablename__ = "calls_in_flight"
    # Rows live for one request: SQLite keeps them in the primary key's B-tree alone (no
    # rowid table), and nothing is indexed by process (the sweep reads the few there are),
    # so admitting and recording a request write one page each here.
    __table_args__ = ({"sqlite_with_rowid": False},)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    process_id: Mapped[int] = mapped_column(Integer)  # serving_processes.id
    key_id: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[int | None] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    requested_model: Mapped[str] = mapped_column(String(400))
    request_type: Mapped[str] = mapped_column(String(32))
    stream: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime] = mapped_column(DateTime())
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)  # estimated from the prompt's text
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)  # bound; None: unknown
    reserved_nano: Mapped[int | None] = mapped_column(BigInteger)  # None: nothing reserved
    end_user: Mapped[str | None] = mapped_column(String(END_USER_CHARS))  # as on the record
    end_user_scope: Mapped[str | None] = mapped_column(String(END_USER_SCOPE_CHARS))
    tags: Mapped[str | None] = mapped_column(Text)
