"""Budget alerts, pure: which thresholds a settlement crossed, the webhook's body, its
signature, the retry schedule (README, Budget alerts). No I/O: ``storage.alerts`` writes
the events, ``gateway.alert_delivery`` sends them."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from metering.core.forecast import project_in_period
from metering.core.money import format_usd
from metering.errors import InvalidInput

PAYLOADS = ("json", "slack")
DEFAULT_THRESHOLDS = (50, 80, 100)
LIMIT_PCT = 100  # the hard limit: its event is ``limit``, the others ``threshold``
EVENT_HEADER = "x-metering-event-id"
SIGNATURE_HEADER = "x-metering-signature"


def parse_thresholds(text: str) -> tuple[int, ...]:
    """``"50,80,100"`` → ``(50, 80, 100)``: whole percentages of the limit, 1 to 100."""
    found: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not item.isdigit() or not 1 <= int(item) <= LIMIT_PCT:
            raise InvalidInput(
                f"alert thresholds are whole percentages from 1 to 100, comma-separated "
                f"(e.g. 50,80,100), not {text!r}"
            )
        found.add(int(item))
    return tuple(sorted(found))


def format_thresholds(thresholds: Sequence[int]) -> str:
    return ",".join(str(t) for t in thresholds)


def reached(*, limit_nano: int, pct: int, spent_nano: int) -> bool:
    """``spent ≥ pct % of limit``, in exact integers."""
    return spent_nano * 100 >= limit_nano * pct


def crossed_thresholds(
    thresholds: Sequence[int], *, limit_nano: int, before_nano: int, after_nano: int
) -> list[int]:
    """The thresholds reached at ``after_nano`` and not at ``before_nano`` (a spend that
    rose past them), ascending."""
    return [
        pct
        for pct in sorted(thresholds)
        if reached(limit_nano=limit_nano, pct=pct, spent_nano=after_nano)
        and not reached(limit_nano=limit_nano, pct=pct, spent_nano=before_nano)
    ]


FORECAST_PCT = -1  # the forecast event's place in the outbox's unique key (once a period)


def forecast_nano(
    *, spent_nano: int, window: tuple[datetime, datetime | None], now: datetime
) -> int | None:
    """The spend the window would end with at the rate of its spend so far, or None: no
    end (``never``), or less than ``core.forecast.IN_PERIOD_AFTER`` % of it has passed (too
    early for a rate). The forecasts' own first rule (``core.forecast``), so an alert and
    ``budgets list`` agree."""
    return project_in_period(spent_nano=spent_nano, window=window, now=now)


def forecast_crossed(
    *,
    limit_nano: int,
    before_nano: int,
    after_nano: int,
    window: tuple[datetime, datetime | None],
    now: datetime,
) -> int | None:
    """The forecast at ``after_nano`` if it reaches the limit and the one at ``before_nano``
    did not (a spend that put the period on course to pass its limit); else None."""
    after = forecast_nano(spent_nano=after_nano, window=window, now=now)
    if after is None or after < limit_nano:
        return None
    before = forecast_nano(spent_nano=before_nano, window=window, now=now)
    return after if before is None or before < limit_nano else None


def event_kind(pct: int) -> str:
    return "limit" if pct >= LIMIT_PCT else "threshold"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One event as its webhook is told it (amounts in integer nano-USD)."""

    event_id: str
    kind: str  # threshold | limit | test
    alert_id: int
    threshold_pct: int
    owner_type: str
    owner: str
    period: str
    period_start: datetime
    next_reset: datetime | None
    spent_nano: int
    limit_nano: int
    created_at: datetime
    forecast_nano: int | None = None  # a ``forecast`` event's projected spend


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds") + "Z"


def json_payload(event: AlertEvent) -> dict[str, object]:
    return {
        "id": event.event_id,
        "type": f"budget.{event.kind}",
        "alert_id": event.alert_id,
        "threshold_pct": event.threshold_pct,
        "budget": {
            "owner_type": event.owner_type,
            "owner": event.owner,
            "period": event.period,
            "limit": format_usd(event.limit_nano),
        },
        "spent": format_usd(event.spent_nano),
        "limit": format_usd(event.limit_nano),
        "forecast": None if event.forecast_nano is None else format_usd(event.forecast_nano),
        "period_start": _iso(event.period_start),
        "next_reset": _iso(event.next_reset),
        "created_at": _iso(event.created_at),
    }


def slack_text(event: AlertEvent) -> str:
    """One readable sentence: owner, threshold, spent/limit in USD, the period's reset."""
    owner = f"{event.owner_type} {event.owner!r}"
    money = f"${format_usd(event.spent_nano)} of its ${format_usd(event.limit_nano)} limit"
    reset = (
        f"the {event.period} period resets at {_iso(event.next_reset)}"
        if event.next_reset is not None
        else "the budget never resets"
    )
    if event.kind == "test":
        return f"Test alert for the budget of {owner}: spent {money} so far; {reset}."
    if event.kind == "forecast":
        projected = format_usd(event.forecast_nano or 0)
        return (
            f"Budget forecast: {owner} is on course to spend ${projected} this period, "
            f"spent {money}; {reset}."
        )
    what = "reached its hard limit" if event.kind == "limit" else f"crossed {event.threshold_pct}%"
    return f"Budget alert: {owner} {what}, spent {money}; {reset}."


def body(event: AlertEvent, payload: str) -> bytes:
    """The POST body (``json`` or ``slack``), the same bytes on every attempt."""
    data = {"text": slack_text(event)} if payload == "slack" else json_payload(event)
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, content: bytes) -> str:
    """The ``x-metering-signature`` value: ``sha256=`` + HMAC-SHA256 of the body, hex."""
    digest = hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_valid(secret: str, content: bytes, signature: str) -> bool:
    """What a receiver checks (constant-time)."""
    return hmac.compare_digest(sign(secret, content), signature)


def retry_delay(attempts: int, *, base_seconds: float, cap_seconds: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base × 2^(attempts−1)."""
    return float(min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))  # not money
