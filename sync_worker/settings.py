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
