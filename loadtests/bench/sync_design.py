"""sync: how fast `flashsale worker run` drains a backlog of stream events into Postgres.

The real engine fills the partition streams first (shoppers reserve, commit, fulfil, release and
let holds expire; SKUs run low, out and get restocked), then each run starts W worker processes
on a fresh database and times the drain until every partition reports synced. A group that reads
nothing keeps the streams untrimmed, so every run drains the very same events; each run then
checks that the ledger holds exactly one row per event.

Runs: 1 worker on 1 partition, 2 workers on that partition (a second worker must not slow the
first), then 1, 2 and 4 workers on 4 partitions (throughput should grow with workers).

The events go to Redis database SYNC_REDIS_DB, which must be empty: it is flushed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
from redis.asyncio import Redis

from engine.connection import RedisClient
from engine.engine import ReservationEngine
from engine.errors import EngineError, InsufficientStock
from engine.keys import KeySchema
from engine.streams import CONSUMER_GROUP, partition_lag
from engine.types import CartLine, LocationConfig, SkuConfig
from sync_worker import migrations
from sync_worker.db import libpq_url
from sync_worker.settings import WorkerSettings

SYNC_REDIS_DB = 13
KEEP_GROUP = "bench-keep"  # reads nothing: the worker's trim may never drop an event
SKUS = 48
SHOPPERS = 64
ON_HAND = 60
LOW_STOCK = 20
RUNS = ((1, 1), (1, 2), (4, 1), (4, 2), (4, 4))  # (partitions, workers)
POLL_S = 0.05
DRAIN_TIMEOUT_S = 600
REPO = Path(__file__).resolve().parents[2]


@dataclass
class SyncRun:
    partitions: int
    workers: int
    events: int
    seconds: float
    events_per_s: float
    ledger_rows: int  # must equal events: exactly once
    worker_cpu_s: float  # all workers together: on a busy machine the steadier figure
    postgres_cpu_s: float  # the workers' Postgres backends (0 if Postgres runs elsewhere)


@dataclass
class SyncResult:
    events: int
    batch_size: int
    mix: dict[str, int] = field(default_factory=dict)
    runs: list[SyncRun] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "batch_size": self.batch_size,
            "mix": self.mix,
            "runs": [dict(r.__dict__) for r in self.runs],
        }


def redis_db_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def database_url_named(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def measure(
    settings: WorkerSettings,
    redis_url: str,
    database_url: str,
    events: int,
    progress: Callable[[str], None] = lambda _: None,
) -> SyncResult:
    url = redis_db_url(redis_url, SYNC_REDIS_DB)
    client = Redis.from_url(url)
    if await client.dbsize():  # never flush what is not ours
        await client.aclose()
        raise RuntimeError(f"Redis database {SYNC_REDIS_DB} is not empty: the sync design needs it")
    try:
        result = SyncResult(events=events, batch_size=settings.worker_batch_size)
        for partitions in sorted({p for p, _ in RUNS}):
            await client.flushdb()
            part_settings = settings.model_copy(update={"partitions": partitions, "redis_url": url})
            progress(f"sync: filling {partitions} partition stream(s) with {events:,} events…")
            produced = await fill(part_settings, events)
            for p, workers in RUNS:
                if p != partitions:
                    continue
                progress(f"sync: draining with {workers} worker(s) on {partitions} partition(s)…")
                run, mix = await drain(client, part_settings, database_url, workers, produced)
                result.runs.append(run)
                result.mix = result.mix or mix
        return result
    finally:
        await client.flushdb()
        await client.aclose()


async def fill(settings: WorkerSettings, target: int) -> int:
    """Real engine calls until the streams hold `target` events; returns how many they hold."""
    assert settings.redis_url
    engine = ReservationEngine.from_settings(settings)
    await engine.start()
    schema = KeySchema(settings.partitions)
    try:
        skus = [f"sync-{n}" for n in range(SKUS)]
        for sku in skus:
            config = SkuConfig(
                locations=(
                    LocationConfig("east", on_hand=ON_HAND),
                    LocationConfig("west", on_hand=ON_HAND),
                ),
                low_stock_threshold=LOW_STOCK,
            )
            await engine.configure_sku(sku, config)
        stop = asyncio.Event()
        expiring: list[str] = []

        async def shopper(n: int) -> None:
            rng = random.Random(n)
            seq = 0
            while not stop.is_set():
                seq += 1
                rid = f"s{n}-{seq}"
                lines = [
                    CartLine(s, rng.randint(1, 2)) for s in rng.sample(skus, rng.choice((1, 1, 2)))
                ]
                try:
                    await engine.reserve(rid, f"c{rng.randrange(500)}", lines, ttl_seconds=1)
                except InsufficientStock:
                    for line in lines:  # sold out: the next delivery comes in
                        await engine.restock(line.sku, rng.choice(("east", "west")), ON_HAND)
                    continue
                except EngineError:
                    continue
                roll = rng.random()
                try:
                    if roll < 0.45:
                        await engine.commit(rid, f"o-{rid}")
                        if rng.random() < 0.6:
                            await engine.fulfil(rid)
                    elif roll < 0.75:
                        await engine.release(rid)
                    else:
                        expiring.append(rid)  # left to expire: the sweep below reclaims it
                except EngineError:
                    pass

        async def watch() -> None:
            while await _stream_total(engine.redis, schema) < target:
                await asyncio.sleep(0.1)
            stop.set()

        await asyncio.gather(watch(), *(shopper(n) for n in range(SHOPPERS)))
        if expiring:
            await asyncio.sleep(1.1)
            while await engine.sweep():
                pass
        for part in schema.all():
            await engine.redis.xgroup_create(part.events, KEEP_GROUP, id="0", mkstream=True)
        return await _stream_total(engine.redis, schema)
    finally:
        await engine.aclose()


async def _stream_total(client: RedisClient, schema: KeySchema) -> int:
    return sum([await client.xlen(part.events) for part in schema.all()])


async def drain(
    client: Redis, settings: WorkerSettings, database_url: str, workers: int, produced: int
) -> tuple[SyncRun, dict[str, int]]:
    schema = KeySchema(settings.partitions)
    for part in schema.all():
        await client.execute_command("XGROUP", "DESTROY", part.events, CONSUMER_GROUP)
    async with fresh_database(database_url) as fresh:
        procs = [worker_process(settings, fresh, f"bench-{n}") for n in range(workers)]
        try:
            # CPU from the first read on: start-up (imports, connecting) is not per event.
            at_start: list[float] = []

            def started() -> None:
                at_start[:] = [sum(cpu_seconds(p.pid) for p in procs), backend_cpu_seconds(fresh)]

            seconds = await _time_drain(client, schema, started)
            cpu = sum(cpu_seconds(proc.pid) for proc in procs) - at_start[0]
            pg_cpu = backend_cpu_seconds(fresh) - at_start[1]
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=30)
        with psycopg.connect(libpq_url(fresh)) as conn:
            rows = conn.execute("SELECT type, count(*) FROM inventory_transactions GROUP BY type")
            mix = {str(t): int(c) for t, c in rows.fetchall()}
    rate = produced / seconds if seconds else 0.0
    run = SyncRun(
        settings.partitions, workers, produced, seconds, rate, sum(mix.values()), cpu, pg_cpu
    )
    return run, mix


@asynccontextmanager
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """A new database beside `database_url`'s, migrated; dropped on exit."""
    name = f"bench_sync_{uuid.uuid4().hex[:12]}"
    admin_url = libpq_url(database_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    fresh = database_url_named(database_url, name)
    try:
        await asyncio.to_thread(migrations.upgrade, fresh)
        yield fresh
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _time_drain(client: Redis, schema: KeySchema, started: Callable[[], None]) -> float:
    """From the first event a worker took to the moment every partition is synced."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    began: float | None = None
    while time.monotonic() < deadline:
        lags = await partition_lag(client, schema)
        now = time.perf_counter()
        if began is None and any(lag.group_exists for lag in lags):
            began = now
            started()
        if began is not None and all(lag.synced for lag in lags):
            return now - began
        await asyncio.sleep(POLL_S)
    raise TimeoutError("the workers did not drain the streams in time")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def backend_cpu_seconds(database_url: str) -> float:
    """CPU of the workers' Postgres backends so far; 0 when they are not on this machine."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'flashsale-sync'"
        ).fetchall()
    total = 0.0
    for (pid,) in pids:
        try:
            total += cpu_seconds(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # Postgres on another machine, or gone
    return total


def worker_process(
    settings: WorkerSettings, database_url: str, consumer: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        FLASHSALE_REDIS_URL=str(settings.redis_url),
        FLASHSALE_DATABASE_URL=database_url,
        FLASHSALE_PARTITIONS=str(settings.partitions),
        FLASHSALE_WORKER_BATCH_SIZE=str(settings.worker_batch_size),
    )
    args = [sys.executable, "-m", "flashsale", "worker", "run", "--consumer", consumer]
    return subprocess.Popen(args, env=env, cwd=REPO, stderr=subprocess.DEVNULL)
