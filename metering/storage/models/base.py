"""The declarative base, its naming convention, and the token and cost columns a usage
record and every daily rollup share (``UsageColumns``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    MetaData,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UsageColumns:
    """The token and cost columns a usage record and a daily rollup share (the rollup
    holds their sums): declared once. Tokens first, then nano-USD amounts; ``total_cost``
    = the components + ``adjustment_cost`` (billed − computed)."""

    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_text_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_audio_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_image_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # 1-hour ones too
    # Their 1-hour part (0 on rows older than it, which did not tell it apart). The server
    # default lets a process of the previous version write on while databases upgrade.
    cached_write_1h_tokens: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default=text("0")
    )
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_text_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_audio_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_image_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted_prediction_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected_prediction_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    citation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    search_queries: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)

    input_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    output_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    citation_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    search_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    request_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    adjustment_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    total_cost: Mapped[int] = mapped_column(BigInteger, default=0)


# Token bucket columns of a usage record (and of the rollup, as sums), then its cost
# component columns (nano-USD): in ``UsageColumns`` order.
TOKEN_COLUMNS = tuple(n for n in UsageColumns.__annotations__ if not n.endswith("_cost"))
COST_COLUMNS = tuple(n for n in UsageColumns.__annotations__ if n.endswith("_cost"))
