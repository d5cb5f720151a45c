"""SPEC §4 error rows against the real ``metering serve`` process: status, ``type``,
the JSON shape the openai SDK reads, and nothing recorded for rejected requests."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx2
import openai
import pytest

from metering.storage.keys import create_key, set_key_enabled, utcnow
from tests.gateway.conftest import Served

pytestmark = pytest.mark.slow


def assert_error_shape(body: dict[str, object], status: int, error_type: str) -> None:
    assert body["type"] == error_type
    assert body["status_code"] == status
    assert body["is_bifrost_error"] is False
    error = body["error"]
    assert isinstance(error, dict)
    assert error["type"] == error_type and error["message"]


def post(served: Served, headers: dict[str, str], content: bytes) -> httpx2.Response:
    return httpx2.post(
        served.url + "/v1/completions",
        headers={"content-type": "application/json", **headers},
        content=content,
        timeout=30,
    )


def test_rejected_requests_are_refused_and_not_recorded(served: Served) -> None:
    client = served.client()
    with pytest.raises(openai.BadRequestError) as bad_model:
        client.completions.create(model="gpt-4o", prompt="x")
    assert bad_model.value.status_code == 400
    assert "provider/model" in bad_model.value.message
    assert_error_shape(bad_model.value.response.json(), 400, "invalid_request_error")

    with pytest.raises(openai.BadRequestError) as wrong_type:
        client.completions.create(model="openai/gpt-4o", prompt="x", extra_body={"n": "two"})
    assert "n" in wrong_type.value.message

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="openai/gpt-4o", messages="hi")  # type: ignore[arg-type]

    malformed = post(served, {"authorization": f"Bearer {served.secret}"}, b"{not json")
    assert malformed.status_code == 400
    assert_error_shape(malformed.json(), 400, "invalid_request_error")

    missing = post(served, {}, b'{"model": "openai/gpt-4o", "prompt": "x"}')
    assert missing.status_code == 401
    assert_error_shape(missing.json(), 401, "virtual_key_required")

    with pytest.raises(openai.AuthenticationError) as unknown:
        served.client("sk-bf-not-a-real-key").completions.create(model="openai/gpt-4o", prompt="x")
    assert unknown.value.status_code == 401
    assert_error_shape(unknown.value.response.json(), 401, "virtual_key_not_found")

    via_header = post(
        served, {"x-bf-vk": "sk-bf-unknown"}, b'{"model": "openai/gpt-4o", "prompt": "x"}'
    )
    assert via_header.status_code == 401
    assert via_header.json()["type"] == "virtual_key_not_found"

    with pytest.raises(openai.APIStatusError) as too_large:
        client.completions.create(model="openai/gpt-4o", prompt="x" * (5 * 1024 * 1024))
    assert too_large.value.status_code == 413
    assert_error_shape(too_large.value.response.json(), 413, "request_too_large")

    assert served.records() == []
    assert served.simulator.received == []


def test_disabled_and_expired_keys_are_blocked(served: Served) -> None:
    with served.engine.begin() as conn:
        expired = create_key(conn, name="old", expires_at=utcnow() - timedelta(days=1)).secret
        allowed_until = datetime(2999, 1, 1)
        live = create_key(conn, name="live", expires_at=allowed_until).secret
        limited = create_key(conn, name="only-anthropic", allowed_models=["anthropic/*"]).secret

    with pytest.raises(openai.PermissionDeniedError) as blocked:
        served.client(expired).completions.create(model="openai/gpt-4o", prompt="x")
    assert blocked.value.status_code == 403
    assert_error_shape(blocked.value.response.json(), 403, "virtual_key_blocked")
    assert "expired" in blocked.value.message

    with pytest.raises(openai.PermissionDeniedError) as model_blocked:
        served.client(limited).completions.create(model="openai/gpt-4o", prompt="x")
    assert model_blocked.value.response.json()["type"] == "model_blocked"

    served.client(live).completions.create(model="openai/gpt-4o", prompt="x")
    assert len(served.records()) == 1
    with served.engine.begin() as conn:
        set_key_enabled(conn, "live", enabled=False)
    # Keys are cached for at most METERING_CACHE_TTL (1 s): after that the key is refused.
    time.sleep(1.2)
    with pytest.raises(openai.PermissionDeniedError) as disabled:
        served.client(live).completions.create(model="openai/gpt-4o", prompt="x")
    assert_error_shape(disabled.value.response.json(), 403, "virtual_key_blocked")
    assert "disabled" in disabled.value.message
    assert len(served.records()) == 1
    assert len(served.simulator.received) == 1


def test_upstream_error_status_is_passed_through_and_recorded(served: Served) -> None:
    with pytest.raises(openai.InternalServerError) as failed:
        served.client().completions.create(
            model="openai/gpt-4o", prompt="x", extra_body={"sim": {"status": 503}}
        )
    assert failed.value.status_code == 503
    body = failed.value.response.json()
    assert body["is_bifrost_error"] is True  # the upstream's own body, unchanged
    assert body["error"]["message"] == "simulated provider failure"
    [record] = served.records()
    assert (record["status"], record["http_status"]) == ("upstream_error", 503)
    assert record["total_cost"] == 0 and record["prompt_tokens"] == 0

    with pytest.raises(openai.BadRequestError) as rejected:
        served.client().completions.create(
            model="openai/gpt-4o", prompt="x", extra_body={"sim": {"status": 400}}
        )
    assert rejected.value.response.json()["is_bifrost_error"] is True
    assert [r["http_status"] for r in served.records()] == [503, 400]


def test_unreadable_upstream_answer_is_502_and_recorded(served: Served) -> None:
    with pytest.raises(openai.APIStatusError) as bad:
        served.client().completions.create(
            model="openai/gpt-4o", prompt="x", extra_body={"sim": {"garbage": True}}
        )
    assert bad.value.status_code == 502
    assert_error_shape(bad.value.response.json(), 502, "upstream_error")
    [record] = served.records()
    assert (record["status"], record["http_status"]) == ("invalid_response", 502)
