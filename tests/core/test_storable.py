from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metering.core.storable import CUT_MARKER, REPLACEMENT, has_control, storable


def test_control_characters_and_surrogates_are_found() -> None:
    for bad in ("\x00", "a\x1fb", "\x7f", "\x85", "\x9f", "\ud800", "x\udfff"):
        assert has_control(bad), repr(bad)
    for good in ("openai/gpt-4o", "", "café", "日本語", "a b", "\u00a0", "\u2028", "\U0001f600"):
        assert not has_control(good), repr(good)


def test_storable_replaces_and_cuts_visibly() -> None:
    assert storable("gpt\x00-4o", 100) == f"gpt{REPLACEMENT}-4o"
    assert storable("\ud800x", 10) == f"{REPLACEMENT}x"
    assert storable("abcdef", 6) == "abcdef"
    assert storable("abcdefg", 6) == "abcde" + CUT_MARKER
    assert storable("\u00a0kept", 10) == "\u00a0kept"  # not a control: left alone


@given(value=st.text(), limit=st.integers(min_value=1, max_value=50))
def test_storable_always_fits_and_keeps_what_fits(value: str, limit: int) -> None:
    out = storable(value, limit)
    assert len(out) <= limit and not has_control(out)
    if len(value) <= limit and not has_control(value):
        assert out == value
