"""Rate-limit windows and decisions, without a database."""

from __future__ import annotations

from datetime import datetime

from metering.core.budget import RequestShape, shape_of_request
from metering.core.rate_limits import (
    WindowUsage,
    admits,
    estimate_tokens,
    refusal_message,
    retry_after_seconds,
    window_start,
)


def test_windows_are_fixed_utc_minutes() -> None:
    assert window_start(datetime(2026, 3, 1, 12, 34, 56, 789)) == datetime(2026, 3, 1, 12, 34)
    assert window_start(datetime(2026, 3, 1, 12, 34)) == datetime(2026, 3, 1, 12, 34)


def test_retry_after_is_whole_seconds_to_the_next_minute_and_at_least_one() -> None:
    assert retry_after_seconds(datetime(2026, 1, 1, 0, 0, 0)) == 60
    assert retry_after_seconds(datetime(2026, 1, 1, 0, 0, 30)) == 30
    assert retry_after_seconds(datetime(2026, 1, 1, 0, 0, 30, 1)) == 30  # 29.999999 s → 30
    assert retry_after_seconds(datetime(2026, 1, 1, 0, 0, 59, 999_999)) == 1


def test_the_n_plus_first_request_of_a_minute_is_refused() -> None:
    assert admits(WindowUsage(0, 0), rpm=3, tpm=None, tokens=10) is None
    assert admits(WindowUsage(2, 0), rpm=3, tpm=None, tokens=10) is None
    assert admits(WindowUsage(3, 0), rpm=3, tpm=None, tokens=10) == "rpm"
    assert admits(WindowUsage(99, 0), rpm=None, tpm=None, tokens=10) is None


def test_tokens_per_minute() -> None:
    assert admits(WindowUsage(1, 90), rpm=None, tpm=100, tokens=10) is None
    assert admits(WindowUsage(1, 91), rpm=None, tpm=100, tokens=10) == "tpm"
    # a request larger than the whole limit still runs alone in a fresh minute
    assert admits(WindowUsage(0, 0), rpm=None, tpm=100, tokens=500) is None
    assert admits(WindowUsage(3, 0), rpm=3, tpm=100, tokens=1) == "rpm"


def test_estimate_is_prompt_bytes_over_four_plus_every_completion() -> None:
    assert estimate_tokens(RequestShape(prompt_bytes=9)) == 3
    shape = RequestShape(prompt_bytes=8, prompts=2, max_tokens=10, choices=3)
    assert estimate_tokens(shape) == 2 + 10 * 3 * 2
    body = {"model": "openai/gpt-4o", "prompt": ["a", "b"], "max_tokens": 5, "n": 2}
    shape = shape_of_request(body)
    assert estimate_tokens(shape) == -(-shape.prompt_bytes // 4) + 5 * 2 * 2


def test_refusal_names_the_limit() -> None:
    rpm = refusal_message(
        key_name="app", limit="rpm", rpm=3, tpm=None, used=WindowUsage(3, 0), retry_after=7
    )
    assert "requests-per-minute limit of 3" in rpm and "retry in 7 s" in rpm
    tpm = refusal_message(
        key_name="app", limit="tpm", rpm=None, tpm=100, used=WindowUsage(1, 95), retry_after=7
    )
    assert "tokens-per-minute limit of 100 (95 tokens" in tpm
