"""redis-limit and engine: the raw ceiling of our reserve script, and the engine around it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis

from engine.calls import ReserveRequest, reserve_call
from engine.config import EngineSettings
from engine.connection import RedisClient, connect_url
from engine.engine import ReservationEngine
from engine.errors import EngineError, InsufficientStock
from engine.keys import KeySchema
from engine.scripts import Scripts
from engine.types import CartLine, LocationConfig, SkuConfig
from loadtests.bench.workload import Attempt, Outcome, Workload

LOCATION = "wh-1"
HOLD_TTL_S = 600  # far beyond any run: no hold expires and hands a unit back mid-bench
PIPELINE_CONNECTIONS = 4  # one per sender task; more only adds context switches on 2 cores
PIPELINE_DEPTH = 256  # requests per round trip at most


def redis_client(url: str, max_connections: int) -> Redis:
    # Blocking pool: hundreds of buyers share a bounded pool and wait for a connection instead
    # of failing with "Too many connections" as the default pool does.
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=60)
    return Redis(connection_pool=pool)


def engine_client(settings: EngineSettings, url: str, max_connections: int) -> RedisClient:
    """The single node's blocking pool, or a cluster client (it waits for connections too)."""
    if settings.redis_cluster:
        return connect_url(url, cluster=True, max_connections=max_connections)
    return redis_client(url, max_connections)


async def configure(engine: ReservationEngine, workload: Workload) -> None:
    for i, sku in enumerate(workload.names()):
        units = workload.units_of(i)
        await engine.configure_sku(sku, SkuConfig(locations=(LocationConfig(LOCATION, units),)))


async def levels(engine: ReservationEngine, skus: list[str]) -> tuple[int, int]:
    """(available, oversold) as the store itself counts them, summed over the SKUs."""
    available = oversold = 0
    for sku in skus:
        total = (await engine.inventory(sku)).total
        available += total.available
        oversold += max(0, total.reserved + total.committed - total.on_hand)
    return available, oversold


class Pipeliner:
    """Coalesces concurrent EVALSHA calls into pipelines: a minimal client at Redis' own speed.

    Each sender takes whatever requests are waiting (up to PIPELINE_DEPTH) and sends them in one
    round trip, so under load the cost per request is Redis' script time plus parsing.
    """

    def __init__(self, redis: Redis, connections: int = PIPELINE_CONNECTIONS) -> None:
        self._redis = redis
        self._queue: asyncio.Queue[tuple[tuple[Any, ...], asyncio.Future[Any]]] = asyncio.Queue()
        self._senders = [asyncio.create_task(self._send()) for _ in range(connections)]

    async def call(self, *command: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((command, future))
        return await future

    async def _send(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < PIPELINE_DEPTH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for command, _ in batch:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # the whole round trip failed: every caller hears it
                replies = [exc] * len(batch)
            for (_, future), reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def aclose(self) -> None:
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)


@contextlib.asynccontextmanager
async def redis_limit(
    settings: EngineSettings, redis_url: str, workload: Workload, run_id: str
) -> AsyncIterator[Attempt]:
    """Our reserve script by SHA, KEYS/ARGV built as ReservationEngine._reserve_part builds them."""
    redis = redis_client(redis_url, PIPELINE_CONNECTIONS + 4)
    engine = ReservationEngine(redis, settings)  # only to configure the SKU and read it back
    await engine.start()
    await configure(engine, workload)
    sha = await redis.script_load(Scripts(redis)["reserve"].script)
    part = KeySchema(settings.partitions).for_sku(workload.sku)
    line = [CartLine(workload.sku, 1)]
    pipeliner = Pipeliner(redis)

    async def attempt(buyer: int, seq: int) -> Outcome:
        rid = f"{run_id}-rl-{buyer}-{seq}"
        # One request per script call: the per-request ceiling, without the engine's batching.
        # The fingerprint only matters when an id is retried; each id here is asked once.
        request = ReserveRequest(rid, f"b{buyer}", HOLD_TTL_S * 1000, rid, line)
        keys, args = reserve_call(part, [request], settings, 0)
        (raw,) = await pipeliner.call("EVALSHA", sha, len(keys), *keys, *args)
        err = orjson.loads(raw).get("err")
        if err is None:
            return Outcome.SOLD
        return Outcome.OUT if err == InsufficientStock.code else Outcome.REFUSED

    try:
        yield attempt
    finally:
        await pipeliner.aclose()
        await engine.aclose()


@contextlib.asynccontextmanager
async def in_process_engine(
    settings: EngineSettings, redis_url: str, workload: Workload, run_id: str
) -> AsyncIterator[Attempt]:
    """ReservationEngine in this process, one call per attempt, as an embedding program uses it."""
    client = engine_client(settings, redis_url, settings.redis_max_connections)
    engine = ReservationEngine(client, settings)
    await engine.start()
    await configure(engine, workload)
    lines = {sku: [CartLine(sku, 1)] for sku in workload.names()}

    async def attempt(buyer: int, seq: int) -> Outcome:
        line = lines[workload.sku_of(buyer)]
        try:
            await engine.reserve(f"{workload.sku}-{buyer}-{seq}", f"b{buyer}", line, HOLD_TTL_S)
        except InsufficientStock:
            return Outcome.OUT
        except EngineError:
            return Outcome.REFUSED
        return Outcome.SOLD

    try:
        yield attempt
    finally:
        await engine.aclose()


async def redis_levels(
    settings: EngineSettings, redis_url: str, skus: list[str]
) -> tuple[int, int]:
    engine = ReservationEngine(connect_url(redis_url, cluster=settings.redis_cluster), settings)
    try:
        return await levels(engine, skus)
    finally:
        await engine.aclose()
