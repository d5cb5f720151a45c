"""Per-key rate limits (pure): fixed one-minute windows, token estimates, decisions.

Algorithm: a **fixed 60-second window** aligned to the UTC minute (``window_start``).
In each window a key may start at most ``rpm`` requests and count at most ``tpm``
tokens. A fixed window is what a counter row per key per minute can enforce
atomically across processes with one conditional UPSERT; its known cost is that a
client can burst up to 2× the limit across a minute boundary (the end of one window
and the start of the next). ``Retry-After`` is the whole seconds until the window
ends (at least 1).

Tokens: at admission a request counts its *estimate* (``estimate_tokens``: its prompt
at ~4 bytes a token plus ``max_tokens`` × choices × prompts); after the response the
count is corrected to the actual ``total_tokens`` of its usage record, so a finished
minute counts what was really used, while requests still in flight count their
estimate. A request is refused for tokens only when the window already has tokens and
the estimate would take it past ``tpm`` — so a single request larger than ``tpm``
still runs alone in a fresh minute instead of being refused for ever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from metering.core.budget import RequestShape

WINDOW_SECONDS = 60
PROMPT_BYTES_PER_TOKEN = 4  # an estimate, not a bound: rate limits are not money


def window_start(now: datetime) -> datetime:
    """The start of the one-minute window containing ``now`` (naive UTC)."""
    return now.replace(second=0, microsecond=0)


def retry_after_seconds(now: datetime) -> int:
    """Whole seconds until the window containing ``now`` ends (≥ 1)."""
    end = window_start(now) + timedelta(seconds=WINDOW_SECONDS)
    return max(1, math.ceil((end - now).total_seconds()))


def estimate_tokens(shape: RequestShape) -> int:
    """Tokens a request is counted for at admission (corrected after the response)."""
    prompt = math.ceil(shape.prompt_bytes / PROMPT_BYTES_PER_TOKEN)
    completion = (shape.max_tokens or 0) * shape.choices * shape.prompts
    return prompt + completion


@dataclass(frozen=True, slots=True)
class RateCharge:
    """What one admitted request counted in its key's window: after the response, the
    window counts its actual ``total_tokens`` instead of the estimate (``correct_tokens``:
    the key has a tpm limit). Journaled with its record (``storage.journal``)."""

    key_id: int
    window: datetime
    estimated_tokens: int
    correct_tokens: bool


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """What a key has used in one window."""

    requests: int
    tokens: int


def admits(used: WindowUsage, *, rpm: int | None, tpm: int | None, tokens: int) -> str | None:
    """None if one more request counting ``tokens`` fits the window, else the name of
    the limit it would pass (``"rpm"`` or ``"tpm"``). The storage layer applies the
    same rule atomically in SQL (``storage.rate_limits``)."""
    if rpm is not None and used.requests + 1 > rpm:
        return "rpm"
    if tpm is not None and used.tokens > 0 and used.tokens + tokens > tpm:
        return "tpm"
    return None


def refusal_message(
    *,
    key_name: str,
    limit: str,
    rpm: int | None,
    tpm: int | None,
    used: WindowUsage,
    retry_after: int,
) -> str:
    if limit == "rpm":
        what = f"requests-per-minute limit of {rpm} ({used.requests} requests this minute)"
    else:
        what = f"tokens-per-minute limit of {tpm} ({used.tokens} tokens counted this minute)"
    return (
        f"virtual key {key_name!r} reached its {what}; retry in {retry_after} s "
        "(Retry-After), or ask for a higher limit"
    )
