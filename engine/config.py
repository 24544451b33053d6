"""Settings: each layer owns its own, one loader reads them all from `FLASHSALE_*` variables.

    EngineSettings            (here) Redis, partitions, TTLs, limits, batching: what the engine uses
    api.settings.ApiSettings           + the HTTP service (host, port, keys, rate limits, Postgres)
    sync_worker.settings.WorkerSettings + the stream → Postgres worker
    flashsale.settings.Settings        all of them + the embedded servers (the composition root's)

The classes are plain pydantic models: building one never reads the environment, so an embedding
program passes exactly what it means. :func:`load_settings` is the one place that reads
`FLASHSALE_*` variables and `.env`, for whichever of these classes a composition root asks for, and
turns a bad value into one line naming the variable.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigurationError

ENV_PREFIX = "FLASHSALE_"
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}


def masked(url: str) -> str:
    """The URL with its password (in the authority or a `password=` parameter) as ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostport}"
    query = parts.query
    if "password=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _check_url(value: str | None, schemes: set[str], example: str) -> str | None:
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"expected a URL like {example}, got {masked(value)!r}")
    if parts.scheme != "unix" and not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"URL {masked(value)!r} names no host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a garbled port
    except ValueError as exc:
        raise ValueError(f"URL {masked(value)!r} has an invalid port") from exc
    return value


def _redis_url(value: str | None) -> str | None:
    return _check_url(value, _REDIS_SCHEMES, "redis://host:6379/0")


def _postgres_url(value: str | None) -> str | None:
    return _check_url(value, _POSTGRES_SCHEMES, "postgresql://user@host:5432/db")


# None means "not given": the composition root then starts the embedded server.
RedisUrl = Annotated[str | None, AfterValidator(_redis_url)]
PostgresUrl = Annotated[str | None, AfterValidator(_postgres_url)]


class EngineSettings(BaseModel):
    """What the reservation engine itself needs."""

    model_config = ConfigDict(validate_default=True, extra="ignore")

    redis_url: RedisUrl = None
    # redis_url names any node of a Redis Cluster (database 0); the client finds the others.
    redis_cluster: bool = False
    partitions: int = Field(default=1, ge=1, le=16384)
    hold_ttl_seconds: int = Field(default=600, ge=1)
    hold_ttl_min_seconds: int = Field(default=1, ge=1)
    hold_ttl_max_seconds: int = Field(default=3600, ge=1)
    max_quantity_per_line: int = Field(default=1000, ge=1)
    max_lines_per_cart: int = Field(default=50, ge=1, le=500)
    retention_seconds: int = Field(
        default=86_400, ge=1
    )  # finished reservations stay readable this long
    reclaim_batch: int = Field(default=100, ge=1, le=1000)  # due holds reclaimed per script call
    sweeper_interval_seconds: float = Field(default=1.0, gt=0)
    # A cart spanning partitions left mid-way (its process died) longer than this is finished by
    # the sweeper: well above one operation's time, well below a hold's TTL.
    cart_recovery_seconds: float = Field(default=5.0, gt=0, le=300)
    # Every partition sells only once the sync worker has confirmed its Redis is not behind
    # Postgres (after any restart or failover; engine.fencing). False: no worker compares, as for
    # an engine embedded without Postgres; a partition found unverified is adopted as it is.
    fencing: bool = True
    # Zero-loss mode: a write is acknowledged only once this many replicas confirmed it (WAIT on
    # the script's connection). 0 = off: a write lost in a failover before it reached a replica
    # is lost unless the sync worker already had it.
    redis_min_replicas_ack: int = Field(default=0, ge=0, le=16)
    # How long a write waits for those replicas before it is answered NotReplicated. A healthy
    # replica confirms in well under a millisecond on one network (a few ms across zones); one
    # second is far above that, yet short enough that a buyer's request fails fast, not at its
    # client's timeout, while a replica is down. Never 0: WAIT 0 would block forever.
    redis_replicas_ack_timeout_ms: int = Field(default=1000, ge=1, le=60_000)
    redis_max_connections: int = Field(default=64, ge=1)
    reserve_batch_max: int = Field(default=64, ge=1, le=1000)  # reserve requests per script call
    # Per partition and process; 1 = strict arrival order across batches, 2 = +40% throughput.
    reserve_batches_in_flight: int = Field(default=2, ge=1, le=16)
    # How long a SKU seen sold out is refused without asking Redis; 0 turns the fast path off.
    sold_out_recheck_ms: int = Field(default=50, ge=0, le=10_000)
    # A folder holding the Lua scripts (same layout as `lua/`). None = the ones shipped with the
    # engine. Only for testing a patched script in a throwaway stack; never set in production.
    lua_dir: Path | None = None

    @field_validator("lua_dir")
    @classmethod
    def _check_lua_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "reserve.lua").is_file():
            raise ValueError(f"{value} holds no reserve.lua")
        return value

    @model_validator(mode="after")
    def _check_ttl_bounds(self) -> Any:
        if not self.hold_ttl_min_seconds <= self.hold_ttl_seconds <= self.hold_ttl_max_seconds:
            raise ValueError(
                "hold_ttl_seconds must lie between hold_ttl_min_seconds and hold_ttl_max_seconds"
            )
        return self


M = TypeVar("M", bound=BaseModel)


@cache
def _from_environment(model: type[BaseModel]) -> type[BaseSettings]:
    """`model` with pydantic-settings' sources in front: FLASHSALE_* variables, then `.env`."""
    config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )
    return type(
        f"{model.__name__}FromEnvironment",
        (BaseSettings, model),
        {"model_config": config, "__module__": model.__module__},
    )


def load_settings(model: type[M], **overrides: object) -> M:
    """Read `model`'s fields from the environment (overrides win), or raise one line naming the
    variable. The result is an instance of `model` (of a subclass that knows the environment)."""
    try:
        settings = _from_environment(model)(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigurationError(f"{ENV_PREFIX}{field.upper()}: {message}") from None
    assert isinstance(settings, model)
    return settings
