"""Raw ASGI response helpers and the error bodies.

Every error the gateway produces is, on the OpenAI-shaped routes (SPEC §4),
``{"error": {"message", "type", "code"}, "type", "status_code", "is_bifrost_error": false}``,
which the OpenAI SDK (``body["error"]["message"]``) and Bifrost clients both read; on the
Anthropic route it is Anthropic's ``{"type": "error", "error": {"type", "message"}}``, so
the Anthropic SDK raises its matching exception (``ErrorStyle``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = b"application/json"
SSE_TYPE = b"text/event-stream"
REQUEST_ID_HEADER = b"x-metering-request-id"


def error_body(status: int, error_type: str, message: str, code: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "error": {"message": message, "type": error_type, "code": code or error_type},
            "type": error_type,
            "status_code": status,
            "is_bifrost_error": False,
        }
    )


@dataclass(frozen=True, slots=True)
class ErrorStyle:
    """How an API's clients expect an error: as a whole body, and as a stream event."""

    anthropic: bool = False  # Anthropic's {"type": "error", "error": {"type", "message"}}
    named_events: bool = False  # the API's stream events have ``event:`` lines

    def body(self, status: int, error_type: str, message: str, code: str | None = None) -> bytes:
        if self.anthropic:
            error = {"type": error_type, "message": message}
            return orjson.dumps({"type": "error", "error": error})
        return error_body(status, error_type, message, code)

    def event(self, status: int, error_type: str, message: str) -> bytes:
        """An error as the last event of a stream."""
        name = b"event: error\n" if self.named_events or self.anthropic else b""
        return name + b"data: " + self.body(status, error_type, message) + b"\n\n"


SPEC_ERRORS = ErrorStyle()


def _headers(
    content_type: bytes,
    length: int | None,
    request_id: str | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> list[Any]:
    headers: list[Any] = [(b"content-type", content_type), *(extra or ())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    if request_id is not None:
        headers.append((REQUEST_ID_HEADER, request_id.encode()))
    return headers


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON_TYPE,
    request_id: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _headers(content_type, len(body), request_id, headers),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    status: int,
    error_type: str,
    message: str,
    *,
    code: str | None = None,
    request_id: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    style: ErrorStyle = SPEC_ERRORS,
) -> None:
    await send_bytes(
        send,
        status,
        style.body(status, error_type, message, code),
        request_id=request_id,
        headers=headers,
    )


async def start_stream(send: Send, status: int, request_id: str) -> None:
    headers = _headers(SSE_TYPE, None, request_id)
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": status, "headers": headers})


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class Refused(Exception):
    def __init__(
        self, status: int, error_type: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(self.retry_after).encode())]


async def read_body(scope: Scope, receive: Receive, *, limit: int) -> bytes:
    """The whole request body; 413 past ``limit`` bytes (declared or received), 499 if the
    client goes away first."""
    too_large = Refused(
        413,
        "request_too_large",
        f"request body is larger than {limit} bytes (METERING_MAX_REQUEST_BYTES)",
    )
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(499, "client_closed_request", "client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
