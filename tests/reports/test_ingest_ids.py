"""A derived request id equals the plain json.dumps reference written here, byte for
byte, whether the package renders it with orjson or json."""

import hashlib
import json
from datetime import datetime
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from metering.reports.ingest_ids import _FLOAT, _may_hold_a_float, derived_request_id

AT = datetime(2026, 11, 3, 12, 0, 0, 500_000)


def reference_id(key_id: int, at: datetime, model: str, response: Any) -> str:
    """The id's definition (README, ingest): the oracle."""
    canonical = json.dumps([key_id, at.isoformat(), model, response], sort_keys=True,
                           separators=(",", ":"))  # fmt: skip
    return "ingest-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


text_st = st.text(max_size=8) | st.sampled_from(["chat.completion", "12:30.5", "1e5", "é", "\x7f"])
json_st = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text_st,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text_st, inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(text_st, json_st, max_size=6), st.integers(1, 10**6), text_st)
def test_fast_derived_id_equals_the_json_one(response: Any, key_id: int, model: str) -> None:
    read = orjson.loads(json.dumps(response))  # as ingest reads a line
    expected = reference_id(key_id, AT, model, read)
    assert derived_request_id(key_id, AT, model, read, read_by_orjson=True) == expected
    assert derived_request_id(key_id, AT, model, read) == expected


def test_fast_derived_id_of_a_usual_response() -> None:
    response = {"id": "x", "model": "gemini-2.5-pro", "usage": {"prompt_tokens": 3}}
    fast = derived_request_id(1, AT, "gemini/gemini-2.5-pro", response, read_by_orjson=True)
    assert fast == reference_id(1, AT, "gemini/gemini-2.5-pro", response)


@given(json_st)
def test_the_float_precheck_decides_as_the_regex_alone(value: Any) -> None:
    body = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert _may_hold_a_float(body) == (_FLOAT.search(body) is not None)
