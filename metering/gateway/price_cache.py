"""The price book in memory, reloaded in the background (``PRICE_REFRESH_SECONDS``)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.core.pricing import PriceBook
from metering.storage.prices import load_price_book

log = logging.getLogger("metering.gateway")


class PriceCache:
    """The price book in memory, reloaded in the background."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.book = PriceBook([])
        self.loaded = False  # False until one load succeeded (e.g. started with the DB down)

    def load(self) -> None:
        with self._engine.connect() as conn:
            self.book = load_price_book(conn)
        self.loaded = True

    async def refresh_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.load)
            except SQLAlchemyError as exc:
                log.warning("price book not refreshed (kept the previous one): %s", exc)
