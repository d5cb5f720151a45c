"""Validation of the client's request body (pydantic models of the seed's request).

The body is validated, never rewritten: every field, unknown ones too, is
forwarded as the client sent it (a streamed request only gains
``stream_options.include_usage``). Numeric fields are strict: ``"5"`` is not 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from metering.core.responses import check_model_name
from metering.core.usage import MAX_TOKEN_COUNT
from metering.errors import InvalidInput

MAX_CHOICES = 128  # n / best_of (OpenAI's own limit)


def _provider_model(value: str) -> str:
    try:
        check_model_name(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None
    return value


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    fallbacks: list[str] | None = None
    stream: bool | None = None
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

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _provider_model(value)

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            _provider_model(item)
        return value


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


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        # pydantic prefixes a validator's own message with "Value error, ".
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse_body(body: bytes, model: type[_Common]) -> tuple[dict[str, Any], _Common]:
    """The JSON object and its validated view; InvalidInput says what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"invalid request: {_describe(exc)}") from None
    return data, request


def prompt_text(data: Mapping[str, Any]) -> str:
    """The prompt's text, for estimating a cut stream's prompt tokens."""
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
