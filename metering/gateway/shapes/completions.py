"""``POST /v1/completions`` (the seed) and ``POST /v1/chat/completions`` (OpenAI's chat).

Their usage is already the canonical one (SPEC §5). A stream asks the upstream for
usage (``stream_options.include_usage``); the usage chunk is relayed only if the client
asked for it too — whatever its empty ``choices`` look like (LiteLLM's carries
``[{"index": 0, "delta": {}}]``) — and ``data: [DONE]`` is held back until the record
is committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from metering.core.budget import RequestShape, output_tokens_bound, shape_of_request
from metering.core.usage import MAX_TOKEN_COUNT, estimate_tokens
from metering.gateway.shapes.base import (
    ApiShape,
    MeteredRequest,
    ParsedRequest,
    StreamReader,
    Verdict,
    json_of,
)
from metering.gateway.streaming import DONE, event_data

MAX_CHOICES = 128  # n / best_of (OpenAI's own limit)


class _Common(MeteredRequest):
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: int | bool | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKEN_COUNT)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    stream_options: dict[str, Any] | None = None

    def end_user(self) -> str | None:
        return self.user


class CompletionRequest(_Common):
    """``POST /v1/completions`` (seed)."""

    prompt: str | list[str]
    best_of: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    echo: bool | None = None
    suffix: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: str
    content: str | list[Any] | None = None


class ChatCompletionRequest(_Common):
    """``POST /v1/chat/completions`` (OpenAI chat shape)."""

    messages: list[ChatMessage]
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_TOKEN_COUNT)] | None = None
    top_logprobs: int | None = None


def prompt_text(data: Mapping[str, Any]) -> str:
    """The prompt's text (every prompt, every message's text)."""
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "".join(p for p in prompt if isinstance(p, str))
    parts: list[str] = []
    for message in data.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                c["text"] for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)
            )
    return "".join(parts)


def answer_text(response: Mapping[str, Any]) -> str:
    """The generated text of a whole response (every choice)."""
    parts: list[str] = []
    choices = response.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


def is_usage_only(obj: Mapping[str, Any]) -> bool:
    """The usage chunk ``include_usage`` asks for: usage, and choices with nothing in them
    (none, or LiteLLM's ``[{"index": 0, "delta": {}}]``)."""
    if not isinstance(obj.get("usage"), dict):
        return False
    choices = obj.get("choices")
    if not choices:
        return True
    if not isinstance(choices, list):
        return False
    return all(_is_empty_choice(c) for c in choices)


def _is_empty_choice(choice: Any) -> bool:
    if not isinstance(choice, dict) or choice.get("finish_reason") is not None:
        return False
    if choice.get("text"):
        return False
    delta = choice.get("delta")
    if delta is None:
        return True
    return isinstance(delta, dict) and all(
        value in (None, "", [], {}) for name, value in delta.items() if name != "role"
    )


class CompletionsReader(StreamReader):
    """A completions or chat stream (``data:`` events, ending ``data: [DONE]``)."""

    def __init__(self, *, client_wants_usage: bool) -> None:
        super().__init__()
        self._client_wants_usage = client_wants_usage

    def read(self, event: bytes) -> Verdict:
        if self.done:
            return Verdict.DROP  # nothing after [DONE]
        data = event_data(event)
        if data is not None and data.strip() == DONE:
            self.done = True
            return Verdict.HOLD
        obj = json_of(data)
        if obj is None:
            return Verdict.RELAY
        self.note(obj)
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        error = obj.get("error")
        if isinstance(error, dict):
            self.error = str(error.get("message"))
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            text = choice.get("text")
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content")
            if isinstance(text, str):
                self.text_parts.append(text)
        if not self._client_wants_usage and is_usage_only(obj):
            return Verdict.DROP
        return Verdict.RELAY


class _Completions(ApiShape):
    def bounds(self, data: Mapping[str, Any]) -> RequestShape:
        return shape_of_request(data)

    def output_bound(self, data: Mapping[str, Any], *, max_output_tokens: int | None) -> int | None:
        return output_tokens_bound(data, max_output_tokens=max_output_tokens)

    def prompt_tokens(self, data: Mapping[str, Any]) -> int:
        return estimate_tokens(prompt_text(data))

    def upstream_body(self, request: ParsedRequest, body: bytes) -> bytes:
        if not request.stream:
            return body
        options = request.data.get("stream_options")
        options = options if isinstance(options, dict) else {}
        return orjson.dumps({**request.data, "stream_options": {**options, "include_usage": True}})

    def answer_text(self, response: Mapping[str, Any]) -> str:
        return answer_text(response)

    def reader(self, request: ParsedRequest) -> StreamReader:
        options = request.data.get("stream_options")
        wants = isinstance(options, dict) and options.get("include_usage") is True
        return CompletionsReader(client_wants_usage=wants)


class TextCompletions(_Completions):
    request_type: ClassVar[str] = "text_completion"
    upstream_path: ClassVar[str] = "/v1/completions"
    request_model = CompletionRequest


class ChatCompletions(_Completions):
    request_type: ClassVar[str] = "chat_completion"
    upstream_path: ClassVar[str] = "/v1/chat/completions"
    request_model = ChatCompletionRequest
