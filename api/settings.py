"""The HTTP service's settings: the engine's, plus what serving it takes (read by
`engine.config.load_settings`, so `FLASHSALE_API_PORT` and the rest keep their names)."""

from __future__ import annotations

from pydantic import Field

from engine.config import EngineSettings, PostgresUrl


class ApiSettings(EngineSettings):
    database_url: PostgresUrl = None  # the ledger the admin reads come from
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64)
    admin_keys: str = ""  # comma-separated
    storefront_keys: str = ""  # comma-separated
    token_secret: str | None = None
    max_body_bytes: int = Field(default=65_536, ge=1024)
    # POST /v1/reservations answered by api/reserve_lane.py; off: by its FastAPI route alone.
    api_reserve_lane: bool = True
    api_opentelemetry: bool = False  # FastAPI's native OpenTelemetry (needs a configured SDK)
    rate_limit_per_customer: int = Field(default=120, ge=0)  # requests per window, 0 = off
    rate_limit_per_key: int = Field(default=0, ge=0)
    rate_limit_window_seconds: int = Field(default=60, ge=1)

    @property
    def admin_key_list(self) -> list[str]:
        return _split_keys(self.admin_keys)

    @property
    def storefront_key_list(self) -> list[str]:
        return _split_keys(self.storefront_keys)


def _split_keys(raw: str) -> list[str]:
    return [k.strip() for k in raw.split(",") if k.strip()]
