"""Option types the commands share: a calendar day (``YYYY-MM-DD``) that says why not."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import click

from metering.core.days import missing_day

__all__ = ["DAY", "Day", "missing_day"]

_DAY_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Day(click.ParamType[date]):
    """A UTC calendar day: a format mismatch and a day that does not exist are told apart."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        text = str(value).strip()
        if _DAY_SHAPE.match(text) is None:
            self.fail(f"{text!r} is not a date (YYYY-MM-DD)", param, ctx)
        problem = missing_day(text)
        if problem is not None:
            self.fail(problem, param, ctx)
        return date.fromisoformat(text)


DAY = Day()
