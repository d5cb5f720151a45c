"""What the shapes' prompts have in common: their size, their text, non-text parts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Content parts whose tokens are not bounded by their size in the body (an image's URL,
# a file id): the prompt bound is then the model's context window (``core.budget``).
NON_TEXT_PARTS = frozenset(
    {
        "image",
        "image_url",
        "input_image",
        "input_file",
        "input_audio",
        "file",
        "document",
        "audio",
    }
)
MAX_DEPTH = 32  # items nest a few levels; deeper is walked no further


def body_bytes(value: Any) -> int:
    """The UTF-8 size of a value re-serialised as JSON (``core.budget``'s prompt bound)."""
    return len(json.dumps(value, ensure_ascii=True, default=str).encode("utf-8"))


def texts_of(value: Any, depth: int = 0) -> str:
    """Every text in a prompt given as a string or as items/blocks (``text``/``content``)."""
    if isinstance(value, str):
        return value
    if depth > MAX_DEPTH:
        return ""
    if isinstance(value, list):
        return "".join(texts_of(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        text = value.get("text")
        own = text if isinstance(text, str) else ""
        return own + texts_of(value.get("content"), depth + 1)
    return ""


def has_non_text(value: Any, depth: int = 0) -> bool:
    """Whether a prompt holds a part of a ``NON_TEXT_PARTS`` type, at any depth (deeper than
    ``MAX_DEPTH``: assumed so, which only makes the bound larger)."""
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, list):
        return any(has_non_text(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        kind = value.get("type")
        if isinstance(kind, str) and kind in NON_TEXT_PARTS:
            return True
        return has_non_text(value.get("content"), depth + 1)
    return False
