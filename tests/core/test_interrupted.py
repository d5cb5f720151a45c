"""An interrupted call's usage and bill (pure): the estimate, the reserved-amount floor,
unpriced models, and the output bound of a request body."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.core.budget import output_tokens_bound
from metering.core.interrupted import (
    INTERRUPTED,
    InFlightCall,
    LastSeen,
    bill_interrupted,
    interrupted_record,
    interrupted_usage,
)
from metering.core.pricing import PriceVersion, Rates
from metering.core.usage import UsageBuckets, estimate_tokens

GPT4O = PriceVersion(
    "openai",
    "gpt-4o",
    date(2024, 1, 1),
    Rates(input=Decimal("2.50"), cache_read=Decimal("1.25"), output=Decimal("10")),
    max_output_tokens=16384,
    id=7,
)
T = datetime(2026, 11, 20, 10, 0, 0)
SEEN = LastSeen("web-1", 4242, datetime(2026, 11, 20, 10, 0, 3))


def call(**changes: object) -> InFlightCall:
    values: dict[str, object] = {
        "request_id": "r-1",
        "process_id": 3,
        "key_id": 1,
        "team_id": 2,
        "customer_id": None,
        "requested_model": "openai/gpt-4o",
        "request_type": "text_completion",
        "stream": True,
        "started_at": T,
        "prompt_tokens": 1000,
        "output_tokens": 500,
        "reserved_nano": None,
    }
    values.update(changes)
    return InFlightCall(**values)  # type: ignore[arg-type]


def test_estimate_priced_like_any_record_when_nothing_was_reserved() -> None:
    # 1000 prompt tokens at $2.50/M + 500 output tokens at $10/M
    bill = bill_interrupted(interrupted_usage(call()), GPT4O, reserved_nano=None)
    assert (bill.total, bill.adjustment, bill.cost_source, bill.estimated) == (
        7_500_000,
        0,
        "estimated",
        True,
    )
    assert bill.price_version_id == 7


def test_never_billed_below_what_was_reserved() -> None:
    bill = bill_interrupted(interrupted_usage(call()), GPT4O, reserved_nano=20_000_000)
    assert bill.total == 20_000_000
    assert bill.components.total == 7_500_000 == bill.computed_total
    assert bill.adjustment == 12_500_000
    assert bill.components.total + bill.adjustment == bill.total
    assert bill.cost_source == "estimated"


def test_an_estimate_above_the_reservation_is_billed_as_estimated() -> None:
    bill = bill_interrupted(interrupted_usage(call()), GPT4O, reserved_nano=1_000_000)
    assert (bill.total, bill.adjustment) == (7_500_000, 0)


def test_unpriced_model_is_marked_unpriced_not_silently_zero() -> None:
    bill = bill_interrupted(interrupted_usage(call()), None, reserved_nano=None)
    assert (bill.total, bill.cost_source, bill.computed_total, bill.estimated) == (
        0,
        "unpriced",
        None,
        True,
    )


@given(
    prompt=st.integers(0, 10**7),
    output=st.integers(0, 10**7),
    reserved=st.none() | st.integers(0, 10**12),
)
def test_bill_is_at_least_the_estimate_and_the_reservation_and_adds_up(
    prompt: int, output: int, reserved: int | None
) -> None:
    usage = UsageBuckets(input_text=prompt, output=output)
    bill = bill_interrupted(usage, GPT4O, reserved_nano=reserved)
    assert bill.adjustment >= 0
    assert bill.components.total + bill.adjustment == bill.total
    assert bill.total == max(bill.components.total, reserved or 0)


def test_record_of_an_interrupted_call() -> None:
    record = interrupted_record(
        call(reserved_nano=20_000_000), GPT4O, seen=SEEN, now=datetime(2026, 11, 20, 11)
    )
    assert record.status == INTERRUPTED
    assert (record.provider, record.model) == ("openai", "gpt-4o")
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (
        1000,
        500,
        1500,
    )
    assert record.usage_estimated is True
    assert (record.total_cost, record.adjustment_cost, record.cost_source) == (
        20_000_000,
        12_500_000,
        "estimated",
    )
    assert record.started_at == T
    assert record.ended_at == SEEN.heartbeat_at  # at the latest when last seen alive
    assert record.http_status is None and record.response_id is None
    message = record.error_message
    assert "interrupted" in message and "web-1" in message and "4242" in message
    assert "reserved" in message


def test_record_ends_at_the_sweep_when_the_process_row_is_gone() -> None:
    swept_at = datetime(2026, 11, 20, 11)
    record = interrupted_record(call(), GPT4O, seen=LastSeen(None, None, None), now=swept_at)
    assert record.ended_at == swept_at
    # a heartbeat before the call started (the call began after it): never before start
    early = LastSeen("h", 1, datetime(2026, 11, 20, 9))
    assert interrupted_record(call(), GPT4O, seen=early, now=swept_at).ended_at == T


def test_unknown_output_bound_bills_the_prompt_and_says_so() -> None:
    record = interrupted_record(call(output_tokens=None), GPT4O, seen=SEEN, now=T)
    assert (record.completion_tokens, record.total_cost) == (0, 2_500_000)
    assert "no output tokens" in record.error_message


@pytest.mark.parametrize(
    ("body", "max_output", "expected"),
    [
        ({"prompt": "hi", "max_tokens": 50}, 16384, 50),
        ({"prompt": "hi", "max_tokens": 50, "n": 3}, None, 150),
        ({"prompt": "hi", "max_tokens": 10, "n": 2, "best_of": 4}, None, 40),
        ({"prompt": ["a", "b", "c"], "max_tokens": 10}, None, 30),
        ({"prompt": "hi"}, 16384, 16384),
        ({"prompt": "hi", "n": 2}, 100, 200),
        ({"prompt": "hi"}, None, None),
        ({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 70}, None, 70),
    ],
)
def test_output_tokens_bound(
    body: dict[str, object], max_output: int | None, expected: int
) -> None:
    assert output_tokens_bound(body, max_output_tokens=max_output) == expected


def test_prompt_estimate_is_four_characters_a_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
