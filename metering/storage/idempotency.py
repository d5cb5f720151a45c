"""Stored answers to admin ``POST`` requests sent with an ``Idempotency-Key`` (README,
Admin API): one per (token, key), kept ``TTL``; older ones are deleted as new ones come."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, text

from metering.storage.models import IdempotentResponse

TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status: int
    body: str


def hold_key(conn: Connection, *, token_id: int, key: str) -> None:
    """Serialise the requests of one (token, key) until this transaction ends, so a
    concurrent duplicate waits and then finds the stored answer. PostgreSQL: a
    transaction-scoped advisory lock; SQLite's writers already queue (``begin_write``)."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"idempotency:{token_id}:{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    conn.execute(text("select pg_advisory_xact_lock(:id)"), {"id": lock_id})


def stored_response(
    conn: Connection, *, token_id: int, key: str, now: datetime
) -> StoredResponse | None:
    """The answer stored for this token and key within ``TTL``, or None."""
    row = conn.execute(
        select(
            IdempotentResponse.request_hash, IdempotentResponse.status, IdempotentResponse.body
        ).where(
            IdempotentResponse.token_id == token_id,
            IdempotentResponse.idempotency_key == key,
            IdempotentResponse.created_at > now - TTL,
        )
    ).first()
    return StoredResponse(row[0], row[1], row[2]) if row is not None else None


def store_response(
    conn: Connection,
    *,
    token_id: int,
    key: str,
    request_hash: str,
    status: int,
    body: str,
    now: datetime,
) -> None:
    """Store an answer (in the transaction of the change it reports); expired answers of
    any token are deleted first, so the table stays bounded by a day's POSTs."""
    conn.execute(delete(IdempotentResponse).where(IdempotentResponse.created_at <= now - TTL))
    conn.execute(
        insert(IdempotentResponse).values(
            token_id=token_id,
            idempotency_key=key,
            request_hash=request_hash,
            status=status,
            body=body,
            created_at=now,
        )
    )
