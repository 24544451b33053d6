"""The sync worker's settings: the engine's (partitions, Redis), plus Postgres and its pace."""

from __future__ import annotations

from pydantic import Field

from engine.config import EngineSettings, PostgresUrl


class WorkerSettings(EngineSettings):
    database_url: PostgresUrl = None
    worker_batch_size: int = Field(default=2000, ge=1, le=10_000)  # entries per transaction
    worker_block_ms: int = Field(default=1000, ge=1)  # how long XREADGROUP waits for new entries
    worker_claim_idle_ms: int = Field(
        default=30_000, ge=100
    )  # a dead consumer's entries are claimed after
    # How often every partition's Redis server is checked for a restart or failover: a
    # partition not behind Postgres sells again within about this long after its node answers.
    worker_fence_poll_ms: int = Field(default=200, ge=10, le=10_000)
    # A partition found behind Postgres is rebuilt from Postgres at once, instead of waiting for
    # `flashsale restore --partition N`. Off by default: an operator may prefer to look first.
    auto_restore: bool = False
