"""Server-sent events from the upstream: split into whole events, relayed unchanged.

``SseSplitter`` turns the upstream's byte chunks into whole events (each ending
in a blank line) so that each event is forwarded as soon as it is complete and a
stream's last event (``data: [DONE]``, ``response.completed``, ``message_stop``) can be
held back until the usage record is committed. Each API shape's ``StreamReader``
(``gateway.shapes``) reads the events for what the record needs.

Estimate of an answer without usable usage (a stream cut or abandoned, or an upstream
that sent no usage or nonsense counts): about
4 characters per token (``core.usage.estimate_tokens``), prompt tokens from the prompt
(the shape's ``prompt_tokens``), completion tokens from the text received; the record is billed with
``cost_source = "estimated"``.
"""

from __future__ import annotations

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


def estimated_usage(prompt_tokens: int, completion: str) -> dict[str, int]:
    """A canonical usage object: the prompt's estimated tokens and the answer's text."""
    completion_tokens = estimate_tokens(completion)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
