"""The admin API's tables (README, Admin API): tokens, the audit log, idempotent answers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from metering.storage.models.base import Base

# ---- the admin API (README, Admin API) -------------------------------------------------


class AdminToken(Base):
    """An admin API token (``sk-adm-…``): stored as its sha256 digest and a display
    prefix, like a virtual key; ``scopes`` is a comma-separated list."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime())


class AuditEntry(Base):
    """One change made through the CLI or the admin API: who (a token's name or ``cli``),
    when, what, and the target's state before and after (JSON, null when absent)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(400))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)


class IdempotentResponse(Base):
    """The stored answer to an admin ``POST`` sent with an ``Idempotency-Key``: replayed
    for the same token, key and body until ``created_at`` + 24 h."""

    __tablename__ = "idempotent_responses"
    __table_args__ = (UniqueConstraint("token_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("admin_tokens.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of method, path, body
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(), index=True)
