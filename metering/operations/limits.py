"""A budget limit as typed by a user: decimal USD, zero only on purpose."""

from __future__ import annotations

from metering.core.bounds import parse_limit
from metering.errors import InvalidInput


def limit_from_option(text: str, *, option: str, allow_zero: bool) -> int:
    """A limit typed at ``option`` → nano-USD; a zero limit only with ``--allow-zero``."""
    limit_nano = parse_limit(text)
    if limit_nano == 0 and not allow_zero:
        raise InvalidInput(
            f"{option} {text} would block every priced request; add --allow-zero to set a "
            "zero limit on purpose, or give a positive amount"
        )
    return limit_nano
