"""The dispatcher's settings: `FLASHSALE_WEBHOOK_*` environment variables (and `.env`)."""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigurationError

ENV_PREFIX = "FLASHSALE_WEBHOOK_"


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # One attempt: connect, send, read the answer. A receiver should answer fast and work later.
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    # Retries: base * 2^(attempt-1), capped, times a random factor in [0.5, 1] (jitter).
    backoff_base_seconds: float = Field(5.0, gt=0)
    backoff_max_seconds: float = Field(3600.0, gt=0)
    # A delivery still failing this long after its first failure is marked failed.
    retry_horizon_seconds: float = Field(86_400.0, gt=0)
    # An endpoint without a single success for longer than this is disabled (and says why):
    # by default, as long as a delivery is retried.
    disable_after_seconds: float = Field(86_400.0, gt=0)
    poll_seconds: float = Field(0.5, gt=0, le=60)
    # Requests in flight per endpoint: a slow endpoint uses up its own slots, not the others'.
    max_in_flight_per_endpoint: int = Field(4, ge=1, le=100)
    batch_size: int = Field(500, ge=1, le=10_000)  # ledger rows per fan-out transaction


def load_webhook_settings(**overrides: object) -> WebhookSettings:
    """Read the settings, turning a validation failure into one line naming the variable."""
    try:
        return WebhookSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigurationError(f"{ENV_PREFIX}{field.upper()}: {message}") from None
