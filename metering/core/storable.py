"""Text that every supported database can hold (pure).

PostgreSQL refuses a NUL in a text column and any string longer than its ``VARCHAR``;
psycopg cannot encode a lone surrogate. Two rules, one per side of the proxy:

* a value the *client* chose and we store (its ``model``, a ``fallbacks`` entry, an
  ingested name) is refused when it holds a control character (``has_control``),
  before anything goes upstream;
* a value the *upstream* chose (served model and provider, response id, error text,
  cache hit type) is made storable by ``storable``: control characters and lone
  surrogates become U+FFFD and an over-long value is cut, ending in ``…``, so the
  record of a call the provider already billed always commits.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
CUT_MARKER = "…"

# C0 and C1 controls, DEL, and lone surrogates (what no column of ours may hold).
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def has_control(value: str) -> bool:
    """True if ``value`` holds a control character or a lone surrogate."""
    return not value.isprintable() and _UNSTORABLE.search(value) is not None


def storable(value: str, limit: int) -> str:
    """``value`` with unstorable characters replaced and cut to ``limit`` characters."""
    if not value.isprintable():  # fast path: a printable string holds nothing to replace
        value = _UNSTORABLE.sub(REPLACEMENT, value)
    if len(value) > limit:
        value = value[: limit - len(CUT_MARKER)] + CUT_MARKER
    return value


def storable_or_none(value: str | None, limit: int) -> str | None:
    return None if value is None else storable(value, limit)
