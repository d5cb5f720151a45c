"""The seam every API shape plugs into (``ApiShape``), and what the shapes share.

An adapter knows one API's wire format and nothing else: it validates a request
body (``parse``), bounds its usage for the worst-case reservation (``bounds``,
``output_bound``, ``prompt_tokens``), reads a whole response into the *canonical*
response — ``{"id", "model", "extra_fields", "usage"}`` with a usage object in the
seed's shape (SPEC §5), which ``core.responses.read_response`` turns into the same usage
buckets for every API — and reads a stream event by event (``reader``: what to relay,
what to hold back until the record is committed, the usage so far). It renders errors
in the shape its SDK expects (``errors``). Admission, reservation, the upstream client,
the recorder, settlement, reports and ingest never look at a body themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from metering.core.attribution import check_end_user
from metering.core.budget import RequestShape
from metering.core.responses import check_model_name
from metering.core.usage import estimate_tokens
from metering.errors import InvalidInput
from metering.gateway.responses import SPEC_ERRORS, ErrorStyle
from metering.gateway.shapes.prompts import body_bytes, has_non_text, texts_of
from metering.gateway.streaming import event_data


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A valid request: its body as sent (forwarded unchanged) and what metering needs."""

    data: dict[str, Any]
    model: str  # provider/model, as recorded (``requested_model``)
    fallbacks: tuple[str, ...]
    stream: bool
    end_user: str | None = None  # the end-user id it names (``core.attribution``)


class Verdict(enum.Enum):
    """What the proxy does with one stream event."""

    RELAY = "relay"  # send it on now
    DROP = "drop"  # never sent (e.g. a usage chunk the client did not ask for)
    HOLD = "hold"  # the stream's last event: sent once the record is committed


class StreamReader:
    """What a stream said so far, as the canonical response; subclasses read events."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.model: str | None = None
        self.extra_fields: dict[str, Any] | None = None
        self.usage: Any = None  # canonical usage object, once the stream told it
        self.text_parts: list[str] = []
        self.done = False  # the stream's terminal event arrived
        self.error: str | None = None  # an error the upstream sent inside the stream

    def read(self, event: bytes) -> Verdict:
        raise NotImplementedError

    def note(self, obj: Mapping[str, Any]) -> None:
        """Identity fields any event may carry: id (first one), model, extra_fields."""
        if isinstance(obj.get("id"), str) and self.response_id is None:
            self.response_id = obj["id"]
        if isinstance(obj.get("model"), str) and obj["model"]:
            self.model = obj["model"]
        extra = obj.get("extra_fields")
        if isinstance(extra, dict):
            self.extra_fields = {**(self.extra_fields or {}), **extra}

    def response(self) -> dict[str, Any]:
        response: dict[str, Any] = {}
        if self.response_id is not None:
            response["id"] = self.response_id
        if self.model is not None:
            response["model"] = self.model
        if self.extra_fields is not None:
            response["extra_fields"] = self.extra_fields
        if self.usage is not None:
            response["usage"] = self.usage
        return response

    def text(self) -> str:
        return "".join(self.text_parts)


def event_json(event: bytes) -> dict[str, Any] | None:
    """The JSON object of an event's ``data:``; None for none, ``[DONE]`` or non-JSON."""
    return json_of(event_data(event))


def json_of(data: bytes | None) -> dict[str, Any] | None:
    """``data`` as a JSON object, else None."""
    if data is None:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


class MeteredRequest(BaseModel):
    """What every request model has: ``model``, Bifrost's ``fallbacks``, ``stream``.
    Unknown fields are allowed (and forwarded); types are strict (``"5"`` is not 5)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    fallbacks: list[str] | None = None
    stream: bool | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return provider_model(value)

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            provider_model(item)
        return value

    def requested_model(self) -> str:
        """The model as recorded: ``provider/model``."""
        return self.model

    def end_user(self) -> str | None:
        """The end-user id the request names in its API's own field (None: none)."""
        return None


class ApiShape:
    """One API shape (subclassed once per API; see the module doc)."""

    request_type: ClassVar[str]  # the records' ``request_type``
    upstream_path: ClassVar[str]  # where the upstream serves it
    request_model: ClassVar[type[MeteredRequest]]  # validates the body
    errors: ClassVar[ErrorStyle] = SPEC_ERRORS
    streams: ClassVar[bool] = True  # whether ``"stream": true`` is a stream
    key_headers: ClassVar[tuple[bytes, ...]] = ()  # more headers that may hold the key
    forwarded_headers: ClassVar[tuple[bytes, ...]] = ()  # client headers sent upstream

    def parse(self, body: bytes) -> ParsedRequest:
        """The valid request, or InvalidInput saying what is wrong (400)."""
        data = json_object(body)
        try:
            request = self.request_model.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(f"invalid request: {describe(exc)}") from None
        stream = self.streams and request.stream is True
        fallbacks = tuple(request.fallbacks or ())
        end_user = check_end_user(request.end_user())
        return ParsedRequest(data, request.requested_model(), fallbacks, stream, end_user)

    def bounds(self, data: Mapping[str, Any]) -> RequestShape:
        """What bounds the request's usage (``core.budget``); InvalidInput if nothing can."""
        raise NotImplementedError

    def output_bound(self, data: Mapping[str, Any], *, max_output_tokens: int | None) -> int | None:
        """The most output tokens it may be billed (None: unknown). Cheap."""
        raise NotImplementedError

    def prompt_tokens(self, data: Mapping[str, Any]) -> int:
        """Its prompt tokens by the estimate (``core.usage.estimate_tokens``)."""
        raise NotImplementedError

    def upstream_body(self, request: ParsedRequest, body: bytes) -> bytes:
        """What is sent upstream: the body as the client sent it, unless a shape must ask
        for usage in a stream."""
        return body

    def canonical(self, response: Mapping[str, Any]) -> Mapping[str, Any]:
        """A whole response → the canonical response (may raise UsageError)."""
        return response

    def answer_text(self, response: Mapping[str, Any]) -> str:
        """The generated text of a whole response, for an estimate without usage."""
        return ""

    def reader(self, request: ParsedRequest) -> StreamReader:
        raise NotImplementedError


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        # pydantic prefixes a validator's own message with "Value error, ": ours say it all.
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def provider_model(value: str) -> str:
    """A pydantic validator's check of a ``provider/model`` name (``check_model_name``)."""
    try:
        check_model_name(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None
    return value


class SingleGeneration(ApiShape):
    """A shape whose request makes one generation (Responses, Anthropic Messages): its
    output is bounded by one field (``limit_field``; the model's max output tokens when
    absent), its prompt is the text of ``prompt_fields``."""

    limit_field: ClassVar[str]
    prompt_fields: ClassVar[tuple[str, ...]]

    def _limit(self, data: Mapping[str, Any]) -> int | None:
        limit = data.get(self.limit_field)
        return limit if isinstance(limit, int) else None

    def bounds(self, data: Mapping[str, Any]) -> RequestShape:
        return RequestShape(
            prompt_bytes=body_bytes(data),
            max_tokens=self._limit(data),
            non_text_input=any(has_non_text(data.get(f)) for f in self.prompt_fields),
        )

    def output_bound(self, data: Mapping[str, Any], *, max_output_tokens: int | None) -> int | None:
        limit = self._limit(data)
        return limit if limit is not None else max_output_tokens

    def prompt_tokens(self, data: Mapping[str, Any]) -> int:
        return estimate_tokens("".join(texts_of(data.get(f)) for f in self.prompt_fields))
