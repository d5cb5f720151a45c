"""Server-sent events from the upstream: split into events, watched, relayed unchanged.

``SseSplitter`` turns the upstream's byte chunks into whole events (each ending
in a blank line) so that each event is forwarded as soon as it is complete and
``data: [DONE]`` can be held back until the usage record is committed.
``StreamWatcher`` reads each event's JSON for what the record needs: the
response id, served model/provider, the usage chunk, and the text received.

Estimate of an answer without usable usage (a stream cut or abandoned, or an upstream
that sent no usage or nonsense counts): about
4 characters per token (``core.usage.estimate_tokens``), prompt tokens from the prompt's
text, completion tokens from the text received; the record is billed with
``cost_source = "estimated"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from metering.core.usage import estimate_tokens

DONE = b"[DONE]"


class SseSplitter:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete events (with their terminating blank line) contained so far."""
        data = self._buffer + chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        events = data.split(b"\n\n")
        self._buffer = events.pop()
        return [event + b"\n\n" for event in events if event.strip()]

    def rest(self) -> bytes:
        """Whatever is left without a terminating blank line (a cut stream)."""
        rest, self._buffer = self._buffer, b""
        return rest


def event_data(event: bytes) -> bytes | None:
    """The ``data:`` payload of an event (lines joined), None if it has none."""
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


class StreamWatcher:
    """What the stream said so far: a response-shaped dict for ``read_response``."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.model: str | None = None
        self.extra_fields: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.text_chars: list[str] = []
        self.done = False
        self.error: dict[str, Any] | None = None

    def watch(self, event: bytes) -> dict[str, Any] | None:
        """Note one event; returns its JSON object (None for [DONE] and non-JSON)."""
        data = event_data(event)
        if data is None:
            return None
        if data.strip() == DONE:
            self.done = True
            return None
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        if isinstance(obj.get("id"), str) and self.response_id is None:
            self.response_id = obj["id"]
        if isinstance(obj.get("model"), str) and obj["model"]:
            self.model = obj["model"]
        extra = obj.get("extra_fields")
        if isinstance(extra, dict):
            self.extra_fields = {**(self.extra_fields or {}), **extra}
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        if isinstance(obj.get("error"), dict):
            self.error = obj["error"]
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            text = choice.get("text")
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content")
            if isinstance(text, str):
                self.text_chars.append(text)
        return obj

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
        return "".join(self.text_chars)

    def estimated_usage(self, prompt: str) -> dict[str, int]:
        return estimated_usage(prompt, self.text())


def estimated_usage(prompt: str, completion: str) -> dict[str, int]:
    """A usage object estimated from the prompt's and the answer's text."""
    prompt_tokens = estimate_tokens(prompt)
    completion_tokens = estimate_tokens(completion)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def answer_text(response: Mapping[str, Any]) -> str:
    """The generated text of a whole response (every choice), for an estimate."""
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


def is_usage_only(obj: dict[str, Any] | None) -> bool:
    """The final usage chunk asked for by ``include_usage`` (no choices)."""
    return obj is not None and isinstance(obj.get("usage"), dict) and not obj.get("choices")
