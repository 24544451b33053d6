"""The dispatcher's settings: `FLASHSALE_WEBHOOK_*` variables, read by the project's one loader."""

from __future__ import annotations

from pydantic import BaseModel, Field

from engine.config import load_settings


class WebhookSettings(BaseModel):
    # One attempt: connect, send, read the answer. A receiver should answer fast and work later.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Retries: base * 2^(attempt-1), capped, times a random factor in [0.5, 1] (jitter).
    webhook_backoff_base_seconds: float = Field(default=5.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    # A delivery still failing this long after its first failure is marked failed.
    webhook_retry_horizon_seconds: float = Field(default=86_400.0, gt=0)
    # An endpoint without a single success for longer than this is disabled (and says why):
    # by default, as long as a delivery is retried.
    webhook_disable_after_seconds: float = Field(default=86_400.0, gt=0)
    webhook_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    # Requests in flight per endpoint: a slow endpoint uses up its own slots, not the others'.
    webhook_max_in_flight_per_endpoint: int = Field(default=4, ge=1, le=100)
    webhook_batch_size: int = Field(default=500, ge=1, le=10_000)  # ledger rows per fan-out


def load_webhook_settings(**overrides: object) -> WebhookSettings:
    """Read the settings, or raise one line naming the variable."""
    return load_settings(WebhookSettings, **overrides)
