"""Per-key requests- and tokens-per-minute limits at the gateway (429 ``rate_limited``).

The algorithm and its guarantees are in ``metering.core.rate_limits`` (fixed one-minute
windows, tokens estimated at admission and corrected to the actual usage); the
counters are rows of the shared database (``storage.rate_limits``), so the limits hold
across every ``metering serve`` process and worker on one database. Keys without
``rpm_limit``/``tpm_limit`` never touch them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from metering.core.budget import shape_of_request
from metering.core.rate_limits import (
    estimate_tokens,
    refusal_message,
    retry_after_seconds,
    window_start,
)
from metering.errors import InvalidInput, RequestRefused
from metering.storage.keys import KeyInfo
from metering.storage.rate_limits import add_tokens, take


@dataclass(frozen=True, slots=True)
class RateCharge:
    """What one admitted request counted in its key's window."""

    key_id: int
    window: datetime
    estimated_tokens: int
    correct_tokens: bool  # the key has a tpm limit: replace the estimate by the actual

    def settle(self, conn: Connection, record: Mapping[str, Any]) -> None:
        """In the record's transaction: the window counts the actual tokens."""
        if self.correct_tokens:
            actual = int(record.get("total_tokens") or 0)
            add_tokens(
                conn, key_id=self.key_id, window=self.window, delta=actual - self.estimated_tokens
            )

    def give_back_tokens(self, conn: Connection) -> None:
        """The request was refused later (e.g. 402): it used no tokens."""
        if self.correct_tokens:
            add_tokens(conn, key_id=self.key_id, window=self.window, delta=-self.estimated_tokens)


def has_rate_limit(key: KeyInfo) -> bool:
    return key.rpm_limit is not None or key.tpm_limit is not None


def take_rate(
    conn: Connection, key: KeyInfo, body: Mapping[str, Any], *, now: datetime
) -> RateCharge:
    """Count the request in its key's current window, or raise 429 ``rate_limited``."""
    try:
        tokens = estimate_tokens(shape_of_request(body))
    except InvalidInput as exc:
        raise RequestRefused(str(exc), status=400, error_type="invalid_request_error") from None
    window = window_start(now)
    admitted, used = take(
        conn, key_id=key.id, window=window, rpm=key.rpm_limit, tpm=key.tpm_limit, tokens=tokens
    )
    if not admitted:
        retry_after = retry_after_seconds(now)
        limit = "rpm" if key.rpm_limit is not None and used.requests >= key.rpm_limit else "tpm"
        message = refusal_message(
            key_name=key.name,
            limit=limit,
            rpm=key.rpm_limit,
            tpm=key.tpm_limit,
            used=used,
            retry_after=retry_after,
        )
        raise RequestRefused(
            message, status=429, error_type="rate_limited", retry_after=retry_after
        )
    return RateCharge(key.id, window, tokens, correct_tokens=key.tpm_limit is not None)
