"""Attribution (README, Attribution): key default tags, the tags of records, and the
end-user and tag rollups."""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from metering.core.attribution import END_USER_CHARS, END_USER_SCOPE_CHARS, TAG_CHARS
from metering.core.records import (
    MODEL_CHARS,
    PROVIDER_CHARS,
)
from metering.storage.models.base import Base, UsageColumns

# ---- attribution: request tags and end users (README, Attribution) -------------------


class KeyTag(Base):
    """A default tag of a virtual key: every request made with the key carries it."""

    __tablename__ = "key_tags"

    key_id: Mapped[int] = mapped_column(
        ForeignKey("virtual_keys.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(TAG_CHARS), primary_key=True)


class Tag(Base):
    """Every tag a record has carried (what tag budgets and reports name)."""

    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(String(TAG_CHARS), primary_key=True)


class RecordTag(Base):
    """A record's tag (many-to-many; the record's ``tags`` column is what it was sent)."""

    __tablename__ = "record_tags"
    __table_args__ = (Index("ix_record_tags_tag_record", "tag", "record_id"),)

    record_id: Mapped[int] = mapped_column(
        ForeignKey("usage_records.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(ForeignKey("tags.name"), primary_key=True)


class DailyEndUserRollup(UsageColumns, Base):
    """``daily_rollups`` split by end user ('' for none): each record counted once."""

    __tablename__ = "daily_end_user_rollups"
    __table_args__ = (
        UniqueConstraint(
            "day",
            "key_id",
            "team_id",
            "customer_id",
            "provider",
            "model",
            "end_user_scope",
            "end_user",
            name="uq_daily_end_user_rollups_group",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date())
    key_id: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[int] = mapped_column(Integer, default=0)
    customer_id: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(PROVIDER_CHARS))
    model: Mapped[str] = mapped_column(String(MODEL_CHARS))
    end_user_scope: Mapped[str] = mapped_column(String(END_USER_SCOPE_CHARS), default="")
    end_user: Mapped[str] = mapped_column(String(END_USER_CHARS), default="")
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    # Records without a price (billed 0 until ``metering reprice``): shown beside amounts.
    unpriced: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class DailyTagRollup(UsageColumns, Base):
    """``daily_end_user_rollups`` split by tag ('' for an untagged record): a record with
    two tags is counted in both, so tag sums may exceed the grand total."""

    __tablename__ = "daily_tag_rollups"
    __table_args__ = (
        UniqueConstraint(
            "day",
            "key_id",
            "team_id",
            "customer_id",
            "provider",
            "model",
            "end_user_scope",
            "end_user",
            "tag",
            name="uq_daily_tag_rollups_group",
        ),
        Index("ix_daily_tag_rollups_tag_day", "tag", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date())
    key_id: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[int] = mapped_column(Integer, default=0)
    customer_id: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(PROVIDER_CHARS))
    model: Mapped[str] = mapped_column(String(MODEL_CHARS))
    end_user_scope: Mapped[str] = mapped_column(String(END_USER_SCOPE_CHARS), default="")
    end_user: Mapped[str] = mapped_column(String(END_USER_CHARS), default="")
    tag: Mapped[str] = mapped_column(String(TAG_CHARS), default="")
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    # Records without a price (billed 0 until ``metering reprice``): shown beside amounts.
    unpriced: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
