"""The one place configuration is read: `FLASHSALE_*` environment variables and a `.env` file.

Nothing else in the project reads the environment. A composition root (the CLI, the API's
lifespan, a test) calls :func:`load_settings` once and passes the object down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigurationError

ENV_PREFIX = "FLASHSALE_"
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # Where the servers are. None means "start the embedded ones in data_dir".
    redis_url: str | None = None
    database_url: str | None = None
    data_dir: Path = Path(".flashsale")
    redis_appendfsync: Literal["always", "everysec", "no"] = "everysec"

    # Engine.
    partitions: int = Field(1, ge=1, le=16384)
    hold_ttl_seconds: int = Field(600, ge=1)
    hold_ttl_min_seconds: int = Field(1, ge=1)
    hold_ttl_max_seconds: int = Field(3600, ge=1)
    max_quantity_per_line: int = Field(1000, ge=1)
    max_lines_per_cart: int = Field(50, ge=1, le=500)
    retention_seconds: int = Field(86_400, ge=1)  # finished reservations stay readable this long
    reclaim_batch: int = Field(100, ge=1, le=1000)  # due holds reclaimed per script call
    sweeper_interval_seconds: float = Field(1.0, gt=0)
    redis_max_connections: int = Field(64, ge=1)
    reserve_batch_max: int = Field(64, ge=1, le=1000)  # reserve requests per script call
    # Per partition and process; 1 = strict arrival order across batches, 2 = +40% throughput.
    reserve_batches_in_flight: int = Field(2, ge=1, le=16)
    # How long a SKU seen sold out is refused without asking Redis; 0 turns the fast path off.
    sold_out_recheck_ms: int = Field(50, ge=0, le=10_000)
    # A folder holding the Lua scripts (same layout as `lua/`). None = the ones shipped with the
    # engine. Only for testing a patched script in a throwaway stack; never set in production.
    lua_dir: Path | None = None

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    api_workers: int = Field(1, ge=1, le=64)
    admin_keys: str = ""  # comma-separated
    storefront_keys: str = ""  # comma-separated
    token_secret: str | None = None
    max_body_bytes: int = Field(65_536, ge=1024)
    api_opentelemetry: bool = False  # FastAPI's native OpenTelemetry (needs a configured SDK)
    rate_limit_per_customer: int = Field(120, ge=0)  # requests per window, 0 = off
    rate_limit_per_key: int = Field(0, ge=0)
    rate_limit_window_seconds: int = Field(60, ge=1)

    # Sync worker.
    worker_batch_size: int = Field(500, ge=1, le=10_000)
    worker_block_ms: int = Field(1000, ge=1)
    worker_claim_idle_ms: int = Field(30_000, ge=100)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return _check_url(value, _REDIS_SCHEMES, "redis://host:6379/0")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return _check_url(value, _POSTGRES_SCHEMES, "postgresql://user@host:5432/db")

    @field_validator("lua_dir")
    @classmethod
    def _check_lua_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "reserve.lua").is_file():
            raise ValueError(f"{value} holds no reserve.lua")
        return value

    @model_validator(mode="after")
    def _check_ttl_bounds(self) -> Settings:
        if not self.hold_ttl_min_seconds <= self.hold_ttl_seconds <= self.hold_ttl_max_seconds:
            raise ValueError(
                "hold_ttl_seconds must lie between hold_ttl_min_seconds and hold_ttl_max_seconds"
            )
        return self

    @property
    def admin_key_list(self) -> list[str]:
        return _split_keys(self.admin_keys)

    @property
    def storefront_key_list(self) -> list[str]:
        return _split_keys(self.storefront_keys)


def _split_keys(raw: str) -> list[str]:
    return [k.strip() for k in raw.split(",") if k.strip()]


def _check_url(value: str | None, schemes: set[str], example: str) -> str | None:
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"expected a URL like {example}, got {value!r}")
    if parts.scheme != "unix" and not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"URL {value!r} names no host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a garbled port
    except ValueError as exc:
        raise ValueError(f"URL {value!r} has an invalid port") from exc
    return value


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation failure into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigurationError(f"{ENV_PREFIX}{field.upper()}: {message}") from None
