"""What every command shares: settings and a lazily opened database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import click
from sqlalchemy import Engine

from metering.storage.database import open_database


@dataclass
class CliContext:
    database_url: str
    _engine: Engine | None = field(default=None, repr=False)

    def engine(self) -> Engine:
        """The database, migrated on first use if empty and with the shipped prices."""
        if self._engine is None:
            self._engine = open_database(self.database_url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


pass_context = click.make_pass_decorator(CliContext)

C = TypeVar("C", bound=click.Command)


def _set_database_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    obj = ctx.find_object(CliContext)
    if value is not None and obj is not None:
        obj.database_url = value


def database_url_option(command: C) -> C:
    """``--database-url`` after the command's name too (``metering keys list
    --database-url URL``): it wins over the one before it and METERING_DATABASE_URL."""
    return click.option(
        "--database-url",
        default=None,
        expose_value=False,
        callback=_set_database_url,
        help="SQLAlchemy URL of the metering database (as before the command).",
    )(command)
