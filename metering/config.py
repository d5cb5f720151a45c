"""Settings from the environment (``METERING_*``); a CLI flag of the same meaning wins."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///metering.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    upstream_url: str = "http://127.0.0.1:8080"
    upstream_api_key: SecretStr | None = None
    upstream_timeout: float = Field(default=600.0, gt=0)  # seconds
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Who wins when the upstream reports a cost: "reported" (default) or "computed".
    billing_policy: Literal["reported", "computed"] = "reported"
    # How long a cached key/budget/price lookup may be stale, in seconds.
    cache_ttl: float = Field(default=1.0, ge=0)
    # Where records that cannot be committed are journaled (``storage.journal``); None:
    # beside the SQLite file, else ./metering-journal.
    journal_dir: Path | None = None
