"""Bodies of /healthz and /readyz."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class PartitionLagOut(BaseModel):
    partition: int
    length: int = Field(description="Entries in the partition stream.")
    pending: int = Field(description="Delivered to the sync worker, not yet acknowledged.")
    oldest_unsynced_age_ms: int = Field(description="Age of the oldest unsynced event (0: none).")
    state: Literal["verified", "new", "recovering", "fenced"] | None = Field(
        None,
        description="verified: sells; new: a Redis with no history, sells (its first write "
        "claims it); recovering: its Redis restarted or failed over and waits "
        "for the sync worker's comparison with Postgres; fenced: found behind Postgres, sells "
        "nothing until `flashsale restore --partition N`. null: unknown.",
    )


class ReadyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "checks": {"redis": "ok", "postgres": "ok", "worker": "ok"},
                    "partitions": [
                        {
                            "partition": 0,
                            "length": 12,
                            "pending": 0,
                            "oldest_unsynced_age_ms": 0,
                            "state": "verified",
                        }
                    ],
                    "webhooks_lag_seconds": 0.0,
                    "fenced": [],
                    "recovering": [],
                }
            ]
        }
    )

    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description='Each dependency: "ok", or why it is not.')
    partitions: list[PartitionLagOut] = Field(description="The sync worker's backlog.")
    webhooks_lag_seconds: float | None = Field(
        None,
        description="How far the webhook dispatcher is behind the ledger (null: unknown). "
        "Informational: it does not make the API unready.",
    )
    fenced: list[int] = Field(
        default_factory=list,
        description="Partitions fenced (behind Postgres; restore them). Informational: the "
        "other partitions keep selling, so it does not make the API unready.",
    )
    recovering: list[int] = Field(
        default_factory=list,
        description="Partitions waiting for their Redis to be verified after a restart or "
        "failover (normally for well under 2 s). Informational, as `fenced`.",
    )
