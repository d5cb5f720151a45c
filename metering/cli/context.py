"""What every command shares: settings and a lazily opened database."""

from __future__ import annotations

from dataclasses import dataclass, field

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
