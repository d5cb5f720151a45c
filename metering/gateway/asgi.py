"""Import-string entry point for uvicorn workers: ``metering.gateway.asgi:app_from_env``.

Each worker process builds its own engine and upstream session from the
``METERING_*`` environment (``metering serve`` sets it from its flags).
"""

from __future__ import annotations

from metering.config import Settings
from metering.gateway.app import GatewayApp, create_app
from metering.runtime import tune_gc
from metering.storage.checkpoint import SAFETY_NET_PAGES
from metering.storage.engine import make_engine


def app_from_env() -> GatewayApp:
    settings = Settings()
    engine = make_engine(settings.database_url, wal_autocheckpoint=SAFETY_NET_PAGES)
    app = create_app(settings, engine, budgets=True)
    tune_gc()  # in each worker, after its imports
    return app
