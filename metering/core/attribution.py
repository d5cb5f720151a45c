"""Who spent it beyond key → team → customer: request tags and end users (pure).

README, Attribution. A request's *tags* are its key's default tags and those of its
``x-metering-tags`` header (``feature=rag,beta``), deduplicated and sorted; its *end
user* is the id the application already sends in the body (each API shape reads its own
field). An end user is scoped by the key's customer, or by the key when it has none
(``end_user_scope``), so two customers' ``user-1`` never mix.

Both are the client's choice and are stored, so they are checked before anything goes
upstream (``InvalidInput``: 400): bounded, no control characters (``core.storable``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from metering.core.storable import has_control
from metering.errors import InvalidInput

TAGS_HEADER = b"x-metering-tags"
MAX_TAGS = 20  # per request, key defaults and header together
TAG_CHARS = 64
END_USER_CHARS = 128  # keeps the rollups' unique keys under PostgreSQL's index row size
END_USER_SCOPE_CHARS = 32  # "customer:<id>" | "key:<id>"
TAG_SEPARATOR = ","  # in the header and in the record's ``tags`` column


def check_tag(tag: str) -> str:
    """One tag (``key=value`` or bare), stripped; InvalidInput saying why it cannot be."""
    text = tag.strip()
    if not text:
        raise InvalidInput("a tag may not be empty (x-metering-tags: feature=rag,beta)")
    if has_control(text):
        raise InvalidInput("tags may not contain control characters (e.g. NUL)")
    if TAG_SEPARATOR in text:
        raise InvalidInput("a tag may not contain a comma (commas separate tags)")
    if len(text) > TAG_CHARS:
        raise InvalidInput(f"a tag is at most {TAG_CHARS} characters ({len(text)} given)")
    return text


def merge_tags(*groups: Iterable[str]) -> tuple[str, ...]:
    """The tags of a request: every group's, deduplicated, sorted; at most ``MAX_TAGS``."""
    tags = tuple(sorted({t for group in groups for t in group}))
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"a request has at most {MAX_TAGS} tags ({len(tags)} given)")
    return tags


def parse_tags_header(raw: bytes | None) -> tuple[str, ...]:
    """The ``x-metering-tags`` header → its tags (none when absent or blank)."""
    if raw is None:
        return ()
    # Counted before anything else: a 1,000-tag header is refused without checking each.
    if raw.count(b",") >= MAX_TAGS:
        raise InvalidInput(f"x-metering-tags holds at most {MAX_TAGS} tags")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("x-metering-tags must be UTF-8 text") from None
    if not text.strip():
        return ()
    return merge_tags(check_tag(part) for part in text.split(TAG_SEPARATOR))


def check_end_user(value: str | None) -> str | None:
    """An end-user id as the client sent it (None: none); InvalidInput if unstorable.
    An empty id is no end user."""
    if value is None or value == "":
        return None
    if has_control(value):
        raise InvalidInput("end-user ids may not contain control characters (e.g. NUL)")
    if len(value) > END_USER_CHARS:
        raise InvalidInput(
            f"an end-user id is at most {END_USER_CHARS} characters ({len(value)} given)"
        )
    return value


def end_user_scope(*, customer_id: int | None, key_id: int) -> str:
    """Whose end users an end-user id names: the key's customer, else the key."""
    return f"customer:{customer_id}" if customer_id is not None else f"key:{key_id}"


def tags_text(tags: Iterable[str]) -> str | None:
    """The record's ``tags`` column: sorted, comma-joined (None for no tag)."""
    joined = TAG_SEPARATOR.join(tags)
    return joined or None


def tags_of(text: str | None) -> tuple[str, ...]:
    """The tags a record's ``tags`` column holds."""
    return tuple(text.split(TAG_SEPARATOR)) if text else ()


class Attribution(NamedTuple):
    """What a request is attributed to beyond its key: known at admission, before the
    upstream call (so budgets of end users and tags can be checked then)."""

    end_user: str | None
    end_user_scope: str | None  # None when there is no end user
    tags: tuple[str, ...]

    @property
    def tags_text(self) -> str | None:
        return tags_text(self.tags)


NO_ATTRIBUTION = Attribution(None, None, ())


def attribute(
    *,
    key_id: int,
    customer_id: int | None,
    key_tags: Iterable[str],
    header_tags: Iterable[str],
    end_user: str | None,
) -> Attribution:
    """A request's attribution: its key's default tags ∪ its header's, its end user scoped
    by its key's customer (or the key)."""
    tags = merge_tags(key_tags, header_tags)
    if end_user is None:
        return Attribution(None, None, tags)
    return Attribution(end_user, end_user_scope(customer_id=customer_id, key_id=key_id), tags)
