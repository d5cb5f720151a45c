"""Calendar days written YYYY-MM-DD: telling a format mismatch from a day that does not
exist (the CLI's dates and the admin API's take the same rule)."""

from __future__ import annotations

import calendar
import re
from datetime import date

from metering.errors import InvalidInput

_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def missing_day(text: str) -> str | None:
    """Why ``text``, written YYYY-MM-DD, is no day of the calendar (None if it is one, or
    is not written YYYY-MM-DD)."""
    found = _DAY.match(text)
    if found is None:
        return None
    year, month, day = (int(part) for part in found.groups())
    if year < 1:
        return f"{text} does not exist (years start at 0001)"
    if not 1 <= month <= 12:
        return f"{text} does not exist (months are 01 to 12)"
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        return f"{text} does not exist ({calendar.month_name[month]} {year} has {days} days)"
    return None


def parse_day(text: str, *, what: str = "date") -> date:
    """``YYYY-MM-DD`` → a date; InvalidInput saying why not (format, or no such day)."""
    text = text.strip()
    if _DAY.match(text) is None:
        raise InvalidInput(f"{what} {text!r} is not a date (YYYY-MM-DD)")
    problem = missing_day(text)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")
    return date.fromisoformat(text)
