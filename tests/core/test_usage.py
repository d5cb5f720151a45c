import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.core.usage import normalize_usage
from metering.errors import UsageError


def test_bifrost_shape_splits_into_disjoint_buckets() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 1000,
            "prompt_tokens_details": {
                "text_tokens": 700,
                "audio_tokens": 50,
                "image_tokens": 30,
                "cached_read_tokens": 150,
                "cached_write_tokens": 70,
            },
            "completion_tokens": 500,
            "completion_tokens_details": {
                "reasoning_tokens": 200,
                "audio_tokens": 20,
                "citation_tokens": 40,
                "num_search_queries": 2,
                "accepted_prediction_tokens": 5,
                "rejected_prediction_tokens": 6,
            },
            "total_tokens": 1500,
        }
    )
    assert (u.input_text, u.input_audio, u.input_image) == (700, 50, 30)
    assert (u.cache_read, u.cache_write) == (150, 70)
    assert (u.output, u.output_audio, u.reasoning) == (280, 20, 200)
    assert (u.citation, u.search_queries) == (40, 2)
    assert u.prompt_tokens == 1000 and u.completion_tokens == 500 and u.total_tokens == 1500
    assert (u.accepted_prediction, u.rejected_prediction) == (5, 6)
    assert not u.totals_adjusted


def test_openai_cached_tokens_mean_cache_read() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 200},
        }
    )
    assert (u.input_text, u.cache_read, u.cache_write) == (800, 200, 0)


def test_anthropic_top_level_cache_fields() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 12307,
            "completion_tokens": 550,
            "cache_creation_input_tokens": 12304,
            "cache_read_input_tokens": 0,
        }
    )
    assert (u.input_text, u.cache_write, u.output) == (3, 12304, 550)


def test_one_hour_cache_writes_are_a_part_of_the_writes() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 1100,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_write_tokens": 100, "cached_write_1h_tokens": 40},
        }
    )
    assert (u.input_text, u.cache_write, u.cache_write_1h) == (1000, 60, 40)
    assert u.prompt_tokens == 1100 and not u.totals_adjusted


def test_anthropic_one_hour_cache_writes() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 1103,
            "completion_tokens": 550,
            "cache_creation_input_tokens": 1100,
            "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 800},
        }
    )
    assert (u.input_text, u.cache_write, u.cache_write_1h, u.output) == (3, 300, 800, 550)
    assert not u.totals_adjusted
    with pytest.raises(UsageError, match="cache_creation must be an object"):
        normalize_usage({"cache_creation_input_tokens": 5, "cache_creation": 5})


def test_one_hour_part_beyond_the_writes_is_billed_in_full() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 100,
            "prompt_tokens_details": {"cached_write_tokens": 10, "cached_write_1h_tokens": 30},
        }
    )
    assert (u.input_text, u.cache_write, u.cache_write_1h, u.prompt_tokens) == (70, 0, 30, 100)
    assert u.totals_adjusted


def test_missing_and_null_details_are_zero() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 5,
            "completion_tokens": None,
            "prompt_tokens_details": None,
            "completion_tokens_details": {"reasoning_tokens": None},
        }
    )
    assert (u.input_text, u.output, u.reasoning) == (5, 0, 0)
    assert normalize_usage(None).total_tokens == 0
    assert normalize_usage({}).total_tokens == 0


def test_details_beyond_their_total_are_billed_in_full_never_negative() -> None:
    u = normalize_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 50},
            "completion_tokens_details": {"reasoning_tokens": 5},
        }
    )
    assert (u.input_text, u.cache_read, u.prompt_tokens) == (0, 50, 50)
    assert (u.output, u.reasoning, u.completion_tokens) == (0, 5, 5)
    assert u.totals_adjusted


@pytest.mark.parametrize(
    "usage, message",
    [
        ({"prompt_tokens": -1}, "must not be negative"),
        ({"prompt_tokens": 1.5}, "whole number"),
        ({"prompt_tokens": "12"}, "whole number"),
        ({"prompt_tokens": True}, "whole number"),
        ({"completion_tokens_details": {"reasoning_tokens": -3}}, "reasoning_tokens"),
        ({"prompt_tokens_details": []}, "must be an object"),
        ([], "must be an object"),
    ],
)
def test_bad_counts_are_rejected_clearly(usage: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        normalize_usage(usage)  # type: ignore[arg-type]


counts = st.integers(min_value=0, max_value=10**7)


@given(counts, counts, counts, counts, counts, counts, counts, counts, counts)
def test_every_token_lands_in_exactly_one_bucket(
    prompt: int,
    cr: int,
    cw: int,
    cw_1h: int,
    audio: int,
    completion: int,
    reasoning: int,
    aout: int,
    img: int,
) -> None:
    u = normalize_usage(
        {
            "prompt_tokens": prompt,
            "prompt_tokens_details": {
                "cached_read_tokens": cr,
                "cached_write_tokens": cw,
                "cached_write_1h_tokens": cw_1h,
                "audio_tokens": audio,
                "image_tokens": img,
            },
            "completion_tokens": completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": aout},
        }
    )
    buckets = [u.input_text, u.input_audio, u.input_image, u.cache_read, u.cache_write]
    assert all(b >= 0 for b in [*buckets, u.cache_write_1h])
    assert u.cache_write_1h == cw_1h and u.cache_write + u.cache_write_1h == max(cw, cw_1h)
    assert u.prompt_tokens == max(prompt, cr + max(cw, cw_1h))
    assert u.totals_adjusted == (
        cr + max(cw, cw_1h) > prompt or reasoning > completion or cw_1h > cw
    )
    assert u.completion_tokens == max(completion, reasoning)
    assert u.output >= 0 and u.output_audio >= 0
