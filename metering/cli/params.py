"""Option types the commands share: a calendar day (``YYYY-MM-DD``) that says why not."""

from __future__ import annotations

import calendar
import re
from datetime import date
from typing import Any

import click

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


class Day(click.ParamType[date]):
    """A UTC calendar day: a format mismatch and a day that does not exist are told apart."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        text = str(value).strip()
        if _DAY.match(text) is None:
            self.fail(f"{text!r} is not a date (YYYY-MM-DD)", param, ctx)
        problem = missing_day(text)
        if problem is not None:
            self.fail(problem, param, ctx)
        return date.fromisoformat(text)


DAY = Day()
