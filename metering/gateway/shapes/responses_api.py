"""``POST /v1/responses``: OpenAI's Responses API.

Usage (SPEC §5): ``input_tokens`` includes ``input_tokens_details.cached_tokens`` (cache
read), ``output_tokens`` includes ``output_tokens_details.reasoning_tokens``; each
``web_search_call`` output item is one search query. A stream is SSE with ``event:``
lines and no ``[DONE]``: its usage arrives in the terminal event (``response.completed``,
``response.incomplete`` or ``response.failed``), which is held back until the record is
committed; every other event is relayed as it arrives. A stream cut before its terminal
event is estimated, as for chat; ``response.failed`` is recorded as an upstream error,
billed from its usage.

Worst case: ``max_output_tokens`` (reasoning included, as OpenAI counts it) or the
model's max output tokens; input images or files make the prompt bound the model's
context window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field

from metering.core.usage import MAX_TOKEN_COUNT
from metering.gateway.responses import ErrorStyle
from metering.gateway.shapes.base import (
    MeteredRequest,
    ParsedRequest,
    SingleGeneration,
    StreamReader,
    Verdict,
    event_json,
)

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class ResponsesRequest(MeteredRequest):
    input: str | list[Any] | None = None
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_TOKEN_COUNT)] | None = None
    tools: list[Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None

    def end_user(self) -> str | None:
        """``safety_identifier`` (OpenAI's successor of ``user``) when both are sent."""
        return self.safety_identifier or self.user


def canonical_usage(usage: Any, searches: int) -> Any:
    """Responses usage → the canonical usage object (anything else is passed on, for
    ``core.usage`` to refuse with its own message)."""
    if not isinstance(usage, Mapping):
        return usage
    canonical: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
    }
    details = usage.get("input_tokens_details")
    if isinstance(details, Mapping):
        canonical["prompt_tokens_details"] = {"cached_tokens": details.get("cached_tokens")}
    elif details is not None:
        canonical["prompt_tokens_details"] = details
    out_details = usage.get("output_tokens_details")
    completion_details: dict[str, Any] = {"num_search_queries": searches}
    if isinstance(out_details, Mapping):
        completion_details["reasoning_tokens"] = out_details.get("reasoning_tokens")
    elif out_details is not None:
        canonical["completion_tokens_details"] = out_details
    canonical.setdefault("completion_tokens_details", completion_details)
    if "cost" in usage:
        canonical["cost"] = usage["cost"]
    return canonical


def _output_items(response: Mapping[str, Any]) -> list[Any]:
    output = response.get("output")
    return output if isinstance(output, list) else []


def search_calls(response: Mapping[str, Any]) -> int:
    return sum(
        1
        for item in _output_items(response)
        if isinstance(item, dict) and item.get("type") == "web_search_call"
    )


def canonical_response(response: Mapping[str, Any]) -> dict[str, Any]:
    canonical: dict[str, Any] = {
        k: response[k] for k in ("id", "model", "extra_fields") if k in response
    }
    if "usage" in response and response["usage"] is not None:
        canonical["usage"] = canonical_usage(response["usage"], search_calls(response))
    return canonical


def output_text(response: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for item in _output_items(response):
        content = item.get("content") if isinstance(item, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "".join(parts)


class ResponsesReader(StreamReader):
    def read(self, event: bytes) -> Verdict:
        if self.done:
            return Verdict.DROP
        obj = event_json(event)
        if obj is None:
            return Verdict.RELAY
        kind = obj.get("type")
        self.note(obj)
        response = obj.get("response")
        if isinstance(response, dict):
            self.note(response)
        if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            self.text_parts.append(obj["delta"])
        elif kind == "error":
            self.error = str(obj.get("message"))
        elif kind in TERMINAL and isinstance(response, dict):
            self.done = True
            if response.get("usage") is not None:
                self.usage = canonical_usage(response["usage"], search_calls(response))
            if kind == "response.failed":
                error = response.get("error")
                message = error.get("message") if isinstance(error, dict) else None
                self.error = f"response.failed: {message or 'the upstream failed the response'}"
            return Verdict.HOLD
        return Verdict.RELAY


class Responses(SingleGeneration):
    request_type: ClassVar[str] = "responses"
    upstream_path: ClassVar[str] = "/v1/responses"
    request_model = ResponsesRequest
    errors: ClassVar[ErrorStyle] = ErrorStyle(named_events=True)
    limit_field: ClassVar[str] = "max_output_tokens"
    prompt_fields: ClassVar[tuple[str, ...]] = ("instructions", "input")

    def canonical(self, response: Mapping[str, Any]) -> Mapping[str, Any]:
        return canonical_response(response)

    def answer_text(self, response: Mapping[str, Any]) -> str:
        return output_text(response)

    def reader(self, request: ParsedRequest) -> StreamReader:
        return ResponsesReader()
