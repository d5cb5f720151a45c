"""Budget alerts, pure (``core.alerts``): thresholds, crossings, bodies, signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.core.alerts import (
    AlertEvent,
    body,
    crossed_thresholds,
    forecast_crossed,
    forecast_nano,
    parse_thresholds,
    retry_delay,
    sign,
    signature_valid,
    slack_text,
)
from metering.errors import InvalidInput

EVENT = AlertEvent(
    event_id="e1", kind="threshold", alert_id=3, threshold_pct=80, owner_type="team",
    owner="web", period="monthly", period_start=datetime(2026, 1, 1),
    next_reset=datetime(2026, 2, 1), spent_nano=812_500_000_000, limit_nano=1000 * 10**9,
    created_at=datetime(2026, 1, 20, 9, 30),
)  # fmt: skip


def test_parse_thresholds() -> None:
    assert parse_thresholds("80, 50,100,50") == (50, 80, 100)
    for bad in ("", "0", "101", "5.5", "-1", "a", "50,,80"):
        with pytest.raises(InvalidInput):
            parse_thresholds(bad)


def test_crossings_are_exact_integers() -> None:
    limit = 3  # nano-USD: 50 % is 1.5
    assert crossed_thresholds([50], limit_nano=limit, before_nano=1, after_nano=2) == [50]
    assert crossed_thresholds([50], limit_nano=limit, before_nano=2, after_nano=3) == []
    assert crossed_thresholds([50, 80, 100], limit_nano=10, before_nano=0, after_nano=10) == [
        50, 80, 100
    ]  # fmt: skip


@given(
    st.integers(0, 10**18), st.lists(st.integers(0, 10**15), min_size=1, max_size=20),
)  # fmt: skip
def test_a_rising_spend_crosses_each_reached_threshold_once(limit: int, steps: list[int]) -> None:
    spent, seen = 0, []
    for step in steps:
        seen += crossed_thresholds((50, 80, 100), limit_nano=limit, before_nano=spent,
                                   after_nano=spent + step)  # fmt: skip
        spent += step
    # a zero limit is reached at zero spend: nothing is crossed by spending
    assert seen == [p for p in (50, 80, 100) if spent * 100 >= limit * p and limit > 0]


def test_json_body_has_decimal_strings_and_the_event_id() -> None:
    data = json.loads(body(EVENT, "json"))
    assert data["id"] == "e1" and data["type"] == "budget.threshold"
    assert (data["spent"], data["limit"]) == ("812.5", "1000")
    assert data["next_reset"] == "2026-02-01T00:00:00Z"
    assert body(EVENT, "json") == body(EVENT, "json")  # the same bytes on every attempt


def test_slack_text() -> None:
    assert slack_text(EVENT) == (
        "Budget alert: team 'web' crossed 80%, spent $812.5 of its $1000 limit; "
        "the monthly period resets at 2026-02-01T00:00:00Z."
    )
    limit = AlertEvent(**{**_fields(EVENT), "kind": "limit", "threshold_pct": 100,
                          "next_reset": None})  # fmt: skip
    assert "reached its hard limit" in slack_text(limit) and "never resets" in slack_text(limit)
    assert json.loads(body(EVENT, "slack")) == {"text": slack_text(EVENT)}


def _fields(event: AlertEvent) -> dict[str, object]:
    return {name: getattr(event, name) for name in AlertEvent.__slots__}  # type: ignore[attr-defined]


def test_signature_is_hmac_sha256_of_the_body() -> None:
    content = body(EVENT, "json")
    expected = hmac.new(b"k", content, hashlib.sha256).hexdigest()
    assert sign("k", content) == f"sha256={expected}"
    assert signature_valid("k", content, sign("k", content))
    assert not signature_valid("k", content + b" ", sign("k", content))


def test_retry_delay_doubles_up_to_its_cap() -> None:
    delays = [retry_delay(n, base_seconds=2, cap_seconds=60) for n in range(1, 8)]
    assert delays == [2, 4, 8, 16, 32, 60, 60]


def test_forecast_is_linear_and_waits_for_a_tenth_of_the_window() -> None:
    day = (datetime(2026, 1, 1), datetime(2026, 1, 2))
    at_6h = datetime(2026, 1, 1, 6)
    assert forecast_nano(spent_nano=300, window=day, now=at_6h) == 1200
    assert forecast_nano(spent_nano=300, window=day, now=datetime(2026, 1, 1, 2)) is None
    assert forecast_nano(spent_nano=300, window=(day[0], None), now=at_6h) is None
    assert forecast_nano(spent_nano=300, window=day, now=day[1]) is None
    kw = {"limit_nano": 1000, "window": day, "now": at_6h}
    assert forecast_crossed(before_nano=200, after_nano=300, **kw) == 1200  # type: ignore[arg-type]
    assert forecast_crossed(before_nano=260, after_nano=300, **kw) is None  # type: ignore[arg-type]
    assert forecast_crossed(before_nano=100, after_nano=200, **kw) is None  # type: ignore[arg-type]


def test_forecast_text_and_body() -> None:
    event = AlertEvent(**{**_fields(EVENT), "kind": "forecast", "threshold_pct": -1,
                          "forecast_nano": 1_250 * 10**9})  # fmt: skip
    assert slack_text(event).startswith(
        "Budget forecast: team 'web' is on course to spend $1250 this period, spent $812.5"
    )
    data = json.loads(body(event, "json"))
    assert (data["type"], data["forecast"]) == ("budget.forecast", "1250")
    assert json.loads(body(EVENT, "json"))["forecast"] is None
