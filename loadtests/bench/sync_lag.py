"""How far the sync worker falls behind a live sale: engine-http runs with a worker beside the API.

The phase runs on Redis database LAG_REDIS_DB (which must be empty; it is flushed afterwards) with
one `flashsale worker run` syncing into a fresh database, so the streams hold only this phase's
events and nothing else consumes them. Every SAMPLE_S the oldest unsynced event's age is read
(what `flashsale_stream_oldest_unsynced_age_seconds` exports); the figure is the maximum over the
phase and the drain that follows it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg
from redis.asyncio import Redis

from engine.keys import KeySchema
from engine.streams import PartitionLag, partition_lag
from loadtests.bench.sync_design import (
    cpu_seconds,
    fresh_database,
    redis_db_url,
    worker_process,
)
from sync_worker.db import libpq_url
from sync_worker.settings import WorkerSettings

LAG_REDIS_DB = 14
SAMPLE_S = 0.05
WAIT_S = 60.0  # for the worker to start, and to sync what is left when the phase ends


@dataclass
class SyncLag:
    redis_url: str  # where the phase must run
    measured: bool = True  # not on Redis Cluster: it has one database only
    max_unsynced_age_ms: int = 0
    p99_unsynced_age_ms: int = 0
    max_at_s: float = 0.0  # when the maximum was seen, from the start of the phase
    samples: int = 0
    ledger_rows: int = 0
    worker_cpu_s: float = 0.0
    ages_ms: list[tuple[float, int]] = field(default_factory=list, repr=False)  # (s, ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_unsynced_age_ms": self.max_unsynced_age_ms,
            "p99_unsynced_age_ms": self.p99_unsynced_age_ms,
            "max_at_s": self.max_at_s,
            "samples": self.samples,
            "ledger_rows": self.ledger_rows,
            "worker_cpu_s": self.worker_cpu_s,
        }


@asynccontextmanager
async def worker_beside(
    settings: WorkerSettings, redis_url: str, database_url: str
) -> AsyncIterator[SyncLag]:
    """Yields where the phase's API must point; samples the lag until the worker caught up."""
    if settings.redis_cluster:
        yield SyncLag(redis_url, measured=False)
        return
    url = redis_db_url(redis_url, LAG_REDIS_DB)
    client = Redis.from_url(url)
    if await client.dbsize():  # never flush what is not ours
        await client.aclose()
        raise RuntimeError(f"Redis database {LAG_REDIS_DB} is not empty: the lag probe needs it")
    schema = KeySchema(settings.partitions)
    lag = SyncLag(url)
    done = asyncio.Event()
    started: float | None = None

    async def sample() -> None:
        while not done.is_set():
            ages = [p.oldest_unsynced_age_ms for p in await partition_lag(client, schema)]
            if started is not None:
                lag.ages_ms.append((time.monotonic() - started, max(ages, default=0)))
            with suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), SAMPLE_S)

    try:
        async with fresh_database(database_url) as fresh:
            proc = worker_process(
                settings.model_copy(update={"redis_url": url}), fresh, "bench-lag"
            )
            sampler = asyncio.create_task(sample())
            try:
                await _until(client, schema, lambda p: p.group_exists, "start")
                started = time.monotonic()
                yield lag
                await _until(client, schema, lambda p: p.synced, "catch up with the phase")
                lag.worker_cpu_s = cpu_seconds(proc.pid)
            finally:
                done.set()
                with suppress(Exception):
                    await sampler
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)
            with psycopg.connect(libpq_url(fresh)) as conn:
                row = conn.execute("SELECT count(*) FROM inventory_transactions").fetchone()
                lag.ledger_rows = int(row[0]) if row else 0
    finally:
        await client.flushdb()
        await client.aclose()
    ordered = sorted(age for _, age in lag.ages_ms)
    lag.samples = len(ordered)
    if ordered:
        lag.max_unsynced_age_ms = ordered[-1]
        lag.p99_unsynced_age_ms = ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]
        lag.max_at_s = next(t for t, age in lag.ages_ms if age == ordered[-1])


async def _until(
    client: Redis, schema: KeySchema, ok: Callable[[PartitionLag], bool], what: str
) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        if all(ok(p) for p in await partition_lag(client, schema)):
            return
        await asyncio.sleep(SAMPLE_S)
    raise TimeoutError(f"the sync worker beside engine-http did not {what} in {WAIT_S:.0f} s")
