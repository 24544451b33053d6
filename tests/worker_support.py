"""Shared by the worker, restore and reconcile tests: a load generator, an independent auditor of
every stream entry, worker processes, and the end-of-test consistency checks. No tests here."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis.asyncio

from engine.engine import ReservationEngine
from engine.errors import EngineError
from engine.keys import KeySchema
from engine.streams import partition_lag
from engine.types import CartLine, LocationConfig, SkuConfig
from flashsale.settings import Settings
from sync_worker.db import connect, libpq_url
from sync_worker.reconcile import reconcile
from sync_worker.worker import SyncWorker

SKUS = ("apple", "banana", "cherry", "damson")
AUDIT_GROUP = "audit"
REPO = Path(__file__).resolve().parents[1]


def fast(settings: Settings, **changes: object) -> Settings:
    """Settings for tests: two partitions, small batches, quick claims and short blocks."""
    values: dict[str, object] = {
        "partitions": 2,
        "worker_batch_size": 50,
        "worker_block_ms": 50,
        "worker_claim_idle_ms": 200,
    }
    values.update(changes)
    return settings.model_copy(update=values)


async def start_engine(settings: Settings) -> ReservationEngine:
    assert settings.redis_url
    engine = ReservationEngine(redis.asyncio.Redis.from_url(settings.redis_url), settings)
    await engine.start()
    return engine


async def seed(engine: ReservationEngine, on_hand: int = 200) -> None:
    for n, sku in enumerate(SKUS):
        await engine.configure_sku(
            sku,
            SkuConfig(
                locations=(
                    LocationConfig("north", on_hand=on_hand),
                    LocationConfig(
                        "south",
                        on_hand=on_hand // 2,
                        safety_stock=2,
                        backorder_limit=3 if n == 0 else 0,
                    ),
                ),
                low_stock_threshold=20,
                max_extensions=3,
            ),
        )


class Load:
    """Random shoppers: reserve, extend, commit, fulfil, release, let holds expire, restock."""

    def __init__(self, engine: ReservationEngine, seed_: int = 7) -> None:
        self.engine = engine
        self.rng = random.Random(seed_)
        self.held: list[str] = []
        self.committed: list[str] = []
        self.ok = 0
        self.refused = 0
        self._n = 0

    async def step(self) -> None:
        e, rng = self.engine, self.rng
        roll = rng.random()
        try:
            if roll < 0.45 or not (self.held or self.committed):
                self._n += 1
                rid = f"r{self._n}-{rng.randrange(10**6)}"
                skus = rng.sample(SKUS, rng.choice((1, 1, 2)))
                lines = [CartLine(s, rng.randint(1, 3)) for s in skus]
                await e.reserve(
                    rid, f"c{rng.randrange(40)}", lines, ttl_seconds=rng.choice((1, 2, 30))
                )
                self.held.append(rid)
            elif roll < 0.65 and self.held:
                rid = self.held.pop(rng.randrange(len(self.held)))
                await e.commit(rid, f"o-{rid}")
                self.committed.append(rid)
            elif roll < 0.75 and self.held:
                await e.release(self.held.pop(rng.randrange(len(self.held))))
            elif roll < 0.8 and self.held:
                await e.extend(rng.choice(self.held), 30)
            elif roll < 0.9 and self.committed:
                rid = self.committed.pop(rng.randrange(len(self.committed)))
                await (e.fulfil(rid) if rng.random() < 0.7 else e.release(rid))
            elif roll < 0.95:
                await e.restock(rng.choice(SKUS), rng.choice(("north", "south")), 20)
            else:
                await e.sweep()
            self.ok += 1
        except EngineError:
            self.refused += 1

    async def run(self, stop: asyncio.Event, pause: float = 0.002, workers: int = 3) -> None:
        async def loop() -> None:
            while not stop.is_set():
                await self.step()
                await asyncio.sleep(pause)

        await asyncio.gather(*(loop() for _ in range(workers)))


class Auditor:
    """Reads every stream entry through a consumer group of its own: the ground truth of what the
    streams ever held (the worker's trim keeps what this group has not read yet)."""

    def __init__(self, client: redis.asyncio.Redis, schema: KeySchema) -> None:
        self.client = client
        self.streams = [p.events for p in schema.all()]
        self.seen: set[tuple[int, str]] = set()

    async def create(self) -> None:
        for stream in self.streams:
            await self.client.xgroup_create(stream, AUDIT_GROUP, id="0", mkstream=True)

    async def poll(self) -> int:
        streams: dict[Any, Any] = dict.fromkeys(self.streams, ">")
        reply: Any = await self.client.xreadgroup(AUDIT_GROUP, "auditor", streams, count=1000)
        got = 0
        for stream, items in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            ids = [i.decode() if isinstance(i, bytes) else i for i, _ in items]
            self.seen.update((self.streams.index(name), i) for i in ids)
            await self.client.xack(name, AUDIT_GROUP, *ids)
            got += len(ids)
        return got

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await self.poll():
                await asyncio.sleep(0.02)
        await self.drain()

    async def drain(self) -> set[tuple[int, str]]:
        while await self.poll():
            pass
        return self.seen


async def wait_synced(client: redis.asyncio.Redis, schema: KeySchema, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        lags = await partition_lag(client, schema)
        if all(lag.synced for lag in lags):
            return
        assert time.monotonic() < deadline, f"the worker did not catch up: {lags}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running_worker(settings: Settings, name: str = "w1") -> AsyncIterator[SyncWorker]:
    assert settings.redis_url and settings.database_url
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    worker = SyncWorker(client, settings.database_url, settings, name)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task
        await client.aclose()


def worker_process(settings: Settings, consumer: str | None = None) -> subprocess.Popen[bytes]:
    """`flashsale worker run` as a child process, its log on a pipe."""
    env = dict(os.environ)
    env.update(
        FLASHSALE_REDIS_URL=str(settings.redis_url),
        FLASHSALE_DATABASE_URL=str(settings.database_url),
        FLASHSALE_PARTITIONS=str(settings.partitions),
        FLASHSALE_WORKER_BATCH_SIZE=str(settings.worker_batch_size),
        FLASHSALE_WORKER_BLOCK_MS=str(settings.worker_block_ms),
        FLASHSALE_WORKER_CLAIM_IDLE_MS=str(settings.worker_claim_idle_ms),
        FLASHSALE_DATA_DIR=str(settings.data_dir),
    )
    args = [sys.executable, "-m", "flashsale", "worker", "run"]
    if consumer:
        args += ["--consumer", consumer]
    return subprocess.Popen(args, env=env, cwd=REPO, stderr=subprocess.PIPE)


def ledger_keys(database_url: str) -> list[tuple[int, str]]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute("SELECT partition, stream_id FROM inventory_transactions").fetchall()
    return [(int(p), str(s)) for p, s in rows]


async def assert_consistent(
    engine: ReservationEngine, settings: Settings, audited: set[tuple[int, str]] | None = None
) -> None:
    """Exactly one ledger row per stream event; Postgres agrees with Redis, ledger sums included;
    every reservation's status in Postgres is the one Redis reports."""
    assert settings.database_url
    if audited is not None:
        keys = await asyncio.to_thread(ledger_keys, settings.database_url)
        assert len(keys) == len(set(keys)), "duplicate ledger rows"
        missing, extra = audited - set(keys), set(keys) - audited
        assert not missing and not extra, f"{len(missing)} missing, {len(extra)} unexpected"
    async with await connect(settings.database_url) as conn:
        result = await reconcile(engine.redis, conn, engine.keys, deep=True)
        assert result.drifts == [], result.drifts[:10]
        assert result.unsynced_applied == 0
        cursor = await conn.execute("SELECT reservation_id, partition, status FROM reservations")
        rows = await cursor.fetchall()
    assert rows, "no reservations synced"
    now_s, now_us = await engine.redis.time()
    now_ms = now_s * 1000 + now_us // 1000
    for rid, partition, status in rows:
        # Each part against its own hash: the engine merges parts into one status for callers.
        key = engine.keys.partition(partition).reservation(rid)
        st, exp = await engine.redis.hmget(key, "st", "exp")
        if st is None:
            continue  # gone from Redis after retention
        in_redis = st.decode() if isinstance(st, bytes) else st
        if in_redis == "held" and int(exp or 0) <= now_ms:
            assert status in ("held", "expired"), (rid, partition, status)  # lazily reclaimed
        else:
            assert status == in_redis, (rid, partition, status, in_redis)
