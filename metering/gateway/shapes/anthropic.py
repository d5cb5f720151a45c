"""Anthropic Messages (``POST /anthropic/v1/messages``, Bifrost's Anthropic-compatible
route; ``/v1/messages`` too), for the Anthropic SDK.

The virtual key may come in ``x-api-key`` (where the SDK sends it); ``anthropic-version``
and ``anthropic-beta`` are forwarded. ``model`` bare (provider ``anthropic``) or
``provider/model``; ``max_tokens`` is required. Every error on this route, ours too, is
in Anthropic's shape (``ErrorStyle(anthropic=True)``).

Usage (SPEC §5): ``input_tokens`` EXCLUDES the cache tokens, so the canonical
``prompt_tokens`` = ``input_tokens`` + ``cache_creation_input_tokens`` +
``cache_read_input_tokens``; ``cache_creation.ephemeral_1h_input_tokens`` is the part of
the cache write billed at the 1-hour rate; ``server_tool_use.web_search_requests`` are
search queries. In a stream, ``message_start.message.usage`` is a whole usage object and
each ``message_delta.usage`` holds *cumulative* counts: each field's last value wins,
falling back to ``message_start``'s — the two are never added. The usage is known once a
``message_delta`` has come (``message_start``'s output count is a placeholder): a stream
cut before it is estimated, as for chat. ``message_stop`` is held back until the record
is committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator

from metering.core.usage import MAX_TOKEN_COUNT
from metering.errors import InvalidInput
from metering.gateway.responses import ErrorStyle
from metering.gateway.shapes.base import (
    MeteredRequest,
    ParsedRequest,
    SingleGeneration,
    StreamReader,
    Verdict,
    event_json,
    provider_model,
)

PROVIDER = "anthropic"


def full_name(model: str) -> str:
    """A bare Anthropic model name → ``anthropic/<model>``; ``provider/model`` unchanged."""
    return model if "/" in model else f"{PROVIDER}/{model}"


class MessagesRequest(MeteredRequest):
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKEN_COUNT)]
    messages: list[Any]
    system: str | list[Any] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        provider_model(full_name(value))
        return value

    def requested_model(self) -> str:
        return full_name(self.model)

    def end_user(self) -> str | None:
        """``metadata.user_id`` (Anthropic's end-user field)."""
        user_id = (self.metadata or {}).get("user_id")
        if user_id is None or isinstance(user_id, str):
            return user_id
        raise InvalidInput("metadata.user_id must be a string (the end user's id)")


def _merged(start: Any, last: Mapping[str, Any]) -> dict[str, Any]:
    """The stream's usage: ``message_start``'s fields, each replaced by its last delta."""
    usage = dict(start) if isinstance(start, Mapping) else {}
    for name, value in last.items():
        if isinstance(value, Mapping) and isinstance(usage.get(name), Mapping):
            usage[name] = {**usage[name], **value}
        else:
            usage[name] = value
    return usage


def canonical_usage(usage: Any) -> Any:
    """Anthropic usage → the canonical usage object. Counts that are not whole numbers
    are passed on as they are, for ``core.usage`` to refuse with its own message."""
    if not isinstance(usage, Mapping):
        return usage
    fresh = usage.get("input_tokens")
    write = usage.get("cache_creation_input_tokens")
    read = usage.get("cache_read_input_tokens")
    counts = [v for v in (fresh, write, read) if v is not None]
    whole = all(type(v) is int for v in counts)
    prompt = sum(counts) if whole else next(v for v in counts if type(v) is not int)
    details: dict[str, Any] = {"cached_read_tokens": read, "cached_write_tokens": write}
    creation = usage.get("cache_creation")
    if isinstance(creation, Mapping):
        details["cached_write_1h_tokens"] = creation.get("ephemeral_1h_input_tokens")
    canonical: dict[str, Any] = {
        "prompt_tokens": prompt,
        "prompt_tokens_details": details,
        "completion_tokens": usage.get("output_tokens"),
    }
    tools = usage.get("server_tool_use")
    if isinstance(tools, Mapping):
        canonical["completion_tokens_details"] = {
            "num_search_queries": tools.get("web_search_requests")
        }
    if whole and type(canonical["completion_tokens"]) is int:
        canonical["total_tokens"] = prompt + canonical["completion_tokens"]
    return canonical


def canonical_response(response: Mapping[str, Any]) -> dict[str, Any]:
    canonical: dict[str, Any] = {k: response[k] for k in ("id", "extra_fields") if k in response}
    if isinstance(response.get("model"), str) and response["model"]:
        canonical["model"] = response["model"]
    if response.get("usage") is not None:
        canonical["usage"] = canonical_usage(response["usage"])
    return canonical


def content_text(content: Any) -> str:
    blocks = content if isinstance(content, list) else ()
    return "".join(
        b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)
    )


class MessagesReader(StreamReader):
    def __init__(self) -> None:
        super().__init__()
        self._start_usage: Any = None
        self._last: dict[str, Any] = {}

    def read(self, event: bytes) -> Verdict:
        if self.done:
            return Verdict.DROP
        obj = event_json(event)
        if obj is None:
            return Verdict.RELAY
        kind = obj.get("type")
        if kind == "message_start" and isinstance(obj.get("message"), dict):
            message = obj["message"]
            self.note(message)
            self._start_usage = message.get("usage")
        elif kind == "content_block_delta" and isinstance(obj.get("delta"), dict):
            delta = obj["delta"]
            for name in ("text", "thinking", "partial_json"):
                if isinstance(delta.get(name), str):
                    self.text_parts.append(delta[name])
        elif kind == "message_delta" and isinstance(obj.get("usage"), dict):
            self._last.update(obj["usage"])
            self.usage = canonical_usage(_merged(self._start_usage, self._last))
        elif kind == "error":
            error = obj.get("error")
            self.error = str(error.get("message") if isinstance(error, dict) else error)
        elif kind == "message_stop":
            self.done = True
            return Verdict.HOLD
        self.note(obj)  # Bifrost's extra_fields, on any event
        return Verdict.RELAY


class Messages(SingleGeneration):
    request_type: ClassVar[str] = "messages"
    upstream_path: ClassVar[str] = "/anthropic/v1/messages"
    request_model = MessagesRequest
    errors: ClassVar[ErrorStyle] = ErrorStyle(anthropic=True)
    key_headers: ClassVar[tuple[bytes, ...]] = (b"x-api-key",)
    forwarded_headers: ClassVar[tuple[bytes, ...]] = (b"anthropic-version", b"anthropic-beta")
    limit_field: ClassVar[str] = "max_tokens"
    prompt_fields: ClassVar[tuple[str, ...]] = ("system", "messages")

    def canonical(self, response: Mapping[str, Any]) -> Mapping[str, Any]:
        return canonical_response(response)

    def answer_text(self, response: Mapping[str, Any]) -> str:
        return content_text(response.get("content"))

    def reader(self, request: ParsedRequest) -> StreamReader:
        return MessagesReader()
