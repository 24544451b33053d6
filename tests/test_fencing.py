"""Fencing against real servers: after a Redis restart nothing is written on a partition until the
sync worker compared it with Postgres; a partition behind Postgres stays fenced until it is
restored; a batch read from the server that died is never written after the comparison."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest
import redis.asyncio

from engine import CartLine, ReservationEngine
from engine.errors import PartitionRecovering
from engine.fencing import FenceStatus
from flashsale.embedded import EmbeddedRedis
from flashsale.settings import Settings
from sync_worker.db import connect, libpq_url
from sync_worker.restore import run_restore
from sync_worker.worker import SyncWorker
from sync_worker.writer import UnverifiedSource
from tests.api_harness import STOREFRONT, api_settings, assert_problem, running_api
from tests.engine_support import kill_redis, sku, skus_in_two_partitions
from tests.failover_support import copy_aof, put_back_aof
from tests.worker_support import (
    assert_consistent,
    fast,
    running_worker,
    start_engine,
    wait_synced,
)

PARTITIONS = 4
RESUME_TARGET_S = 2.0


@pytest.fixture
def fence_cfg(cfg: Settings, own_redis: EmbeddedRedis) -> Settings:
    return fast(cfg, redis_url=own_redis.url, partitions=PARTITIONS, worker_fence_poll_ms=50)


async def forget_connections(*clients: redis.asyncio.Redis) -> None:
    """Drops the pooled connections to the killed server, as a client's first failed call
    would (that call's error is not what these tests are about)."""
    for client in clients:
        await client.connection_pool.disconnect()


async def state_of(engine: ReservationEngine, partition: int) -> FenceStatus:
    return next(s for s in await engine.partition_states() if s.partition == partition)


async def stream_last(engine: ReservationEngine, partition: int) -> str:
    info = await engine.redis.xinfo_stream(engine.keys.partition(partition).events)
    last = info["last-generated-id"]
    return last.decode() if isinstance(last, bytes) else str(last)


async def test_a_new_redis_is_claimed_by_its_first_write_and_sells_at_once(
    fence_cfg: Settings,
) -> None:
    engine = await start_engine(fence_cfg)
    try:
        await engine.configure_sku("kettle", sku(3))
        await engine.reserve("r1", "c1", [CartLine("kettle", 1)])
        part = engine.keys.for_sku("kettle").number
        status = await state_of(engine, part)
        assert status.verified and status.state == "verified"
        assert status.marker == status.run  # claimed: this server, no worker needed
    finally:
        await engine.aclose()


async def test_after_a_restart_nothing_is_written_until_the_worker_compared_then_it_sells(
    fence_cfg: Settings, own_redis: EmbeddedRedis
) -> None:
    engine = await start_engine(fence_cfg)
    part = engine.keys.for_sku("kettle").number
    try:
        await engine.configure_sku("kettle", sku(3))
        await engine.reserve("r1", "c1", [CartLine("kettle", 1)])
        async with running_worker(fence_cfg):
            await wait_synced(engine.redis, engine.keys)
        before = await state_of(engine, part)
        last = await stream_last(engine, part)

        kill_redis(own_redis)
        own_redis.start()  # the same AOF, every write fsynced: nothing was lost
        await forget_connections(engine.redis)
        with pytest.raises(PartitionRecovering) as refused:
            await engine.reserve("r2", "c2", [CartLine("kettle", 1)])
        assert refused.value.partition == part and not refused.value.fenced
        assert "retry shortly" in str(refused.value)
        # Reads answer; the snapshot reclaims nothing; no script wrote an event.
        assert (await engine.get_reservation("r1")).status == "held"
        assert (await engine.inventory("kettle")).total.reserved == 1
        assert await stream_last(engine, part) == last
        after = await state_of(engine, part)
        assert after.run != before.run and after.state == "recovering"

        async with running_worker(fence_cfg):
            started = time.monotonic()
            while True:
                try:
                    await engine.reserve("r2", "c2", [CartLine("kettle", 1)])
                    break
                except PartitionRecovering:
                    assert time.monotonic() - started < RESUME_TARGET_S
                    await asyncio.sleep(0.02)
            resumed = time.monotonic() - started
            print(f"partition {part} sold again {resumed:.2f} s after the worker started")
            await wait_synced(engine.redis, engine.keys)
        await assert_not_oversold(engine, ["kettle"])
        await assert_consistent(engine, fence_cfg)
    finally:
        await engine.aclose()


async def test_a_partition_behind_postgres_is_fenced_until_restored_and_the_rest_sells_on(
    fence_cfg: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    rewound, other = skus_in_two_partitions("kettle", PARTITIONS, "toaster")
    engine = await start_engine(fence_cfg)
    lost_part = engine.keys.for_sku(rewound).number
    other_part = engine.keys.for_sku(other).number
    try:
        await engine.configure_sku(rewound, sku(10))
        await engine.configure_sku(other, sku(10))
        await engine.reserve("early", "c1", [CartLine(rewound, 1)])
        await engine.reserve("steady", "c2", [CartLine(other, 1)])
        async with running_worker(fence_cfg):
            await wait_synced(engine.redis, engine.keys)
            copy_aof(own_redis, tmp_path / "older.aof")
            # Sold after the copy, and synced: Postgres has it, the older file does not.
            await engine.reserve("late", "c3", [CartLine(rewound, 2)])
            await engine.commit("late", "order-late")
            await wait_synced(engine.redis, engine.keys)

        kill_redis(own_redis)
        put_back_aof(own_redis, tmp_path / "older.aof")
        own_redis.start()
        await forget_connections(engine.redis)
        older_last = await stream_last(engine, lost_part)

        async with running_worker(fence_cfg):
            assert await _until(lambda: _is(engine, lost_part, "fenced"))
            assert await _until(lambda: _is(engine, other_part, "verified"))
            with pytest.raises(PartitionRecovering) as refused:
                await engine.reserve("stale", "c4", [CartLine(rewound, 9)])
            assert refused.value.fenced and refused.value.partition == lost_part
            with pytest.raises(PartitionRecovering):  # commits too: nothing writes there
                await engine.commit("early", "order-early")
            # The other partition's Redis was not behind: it sells on.
            await engine.reserve("other-1", "c5", [CartLine(other, 1)])
            assert await stream_last(engine, lost_part) == older_last  # no write slipped in
            fenced = await state_of(engine, lost_part)
            assert fenced.fenced is not None
            assert fenced.fenced["redis_last"] == older_last

            assert fence_cfg.database_url
            async with await connect(fence_cfg.database_url) as conn:
                await run_restore(engine.redis, conn, fence_cfg, force=True, partition=lost_part)
            # Restored from Postgres: the committed order the older file lacked is back.
            late = await engine.get_reservation("late")
            assert late.status == "committed" and late.order_id == "order-late"
            assert (await state_of(engine, lost_part)).state == "verified"
            await engine.reserve("after", "c6", [CartLine(rewound, 1)])
            await wait_synced(engine.redis, engine.keys)
        level = (await engine.inventory(rewound)).total
        assert (level.reserved, level.committed) == (2, 2)  # early + after held, late committed
        await assert_not_oversold(engine, [rewound, other])
        await assert_consistent(engine, fence_cfg)
    finally:
        await engine.aclose()


async def test_a_batch_read_from_the_server_that_died_is_not_written_after_the_comparison(
    fence_cfg: Settings, own_redis: EmbeddedRedis
) -> None:
    engine = await start_engine(fence_cfg)
    assert fence_cfg.redis_url and fence_cfg.database_url
    client = redis.asyncio.Redis.from_url(fence_cfg.redis_url)
    worker = SyncWorker(client, fence_cfg.database_url, fence_cfg, "slow")
    try:
        await engine.configure_sku("kettle", sku(3))
        await worker.fences.check()
        await worker.streams.ensure_groups()
        await engine.reserve("r1", "c1", [CartLine("kettle", 1)])
        batch = await worker.streams.read_new()  # in hand, not yet written, when Redis dies
        assert batch
        kill_redis(own_redis)
        own_redis.start()
        await forget_connections(engine.redis, client)
        await worker.fences.check()  # the new server is compared and accepted
        with pytest.raises(UnverifiedSource):
            await worker.process(batch)
        with psycopg.connect(libpq_url(fence_cfg.database_url)) as conn:
            rows = conn.execute("SELECT count(*) FROM inventory_transactions").fetchone()
        assert rows == (0,)
        # The entries are still pending: read again from the new server, they are written.
        async with running_worker(fence_cfg, name="slow"):
            await wait_synced(engine.redis, engine.keys)
        await assert_consistent(engine, fence_cfg)
    finally:
        await client.aclose()
        await engine.aclose()


async def test_an_engine_without_a_durable_side_adopts_the_restarted_redis(
    fence_cfg: Settings, own_redis: EmbeddedRedis
) -> None:
    engine = await start_engine(fence_cfg.model_copy(update={"fencing": False}))
    try:
        await engine.configure_sku("kettle", sku(3))
        kill_redis(own_redis)
        own_redis.start()
        await forget_connections(engine.redis)
        await engine.reserve("r1", "c1", [CartLine("kettle", 1)])
        assert (await state_of(engine, engine.keys.for_sku("kettle").number)).verified
    finally:
        await engine.aclose()


async def test_the_api_answers_503_with_retry_after_and_names_the_partition(
    fence_cfg: Settings, own_redis: EmbeddedRedis
) -> None:
    assert own_redis.url
    settings = api_settings(own_redis.url, None, partitions=PARTITIONS)
    async with running_api(settings) as api:
        await api.put_sku("kettle", 5)
        part = api.ctx.engine.keys.for_sku("kettle").number
        kill_redis(own_redis)
        own_redis.start()
        await forget_connections(api.ctx.engine.redis)
        response = await api.reserve(1, sku="kettle")
        body = assert_problem(response, 503, "partition_recovering")
        assert response.headers["Retry-After"] == "1"
        assert body["partition"] == part and body["fenced"] is False
        assert (await api.client.get("/v1/inventory/kettle", headers=STOREFRONT)).status_code == 200
        ready = (await api.client.get("/readyz")).json()
        assert part in ready["recovering"] and ready["fenced"] == []
        states = {p["partition"]: p["state"] for p in ready["partitions"]}
        assert states[part] == "recovering"
        metrics = (await api.client.get("/metrics")).text
        assert f'flashsale_partition_unverified{{partition="{part}"}} 1.0' in metrics
        assert f'flashsale_partition_fenced{{partition="{part}"}} 0.0' in metrics


async def assert_not_oversold(engine: ReservationEngine, skus: list[str]) -> None:
    """Reserved is exactly what the holds say, and nothing is held or sold beyond on_hand (the
    worker trims synced events, so the stream-sum check of other tests does not apply)."""
    for name in skus:
        part = engine.keys.for_sku(name)
        held = 0
        for raw in await engine.redis.zrange(part.holds(name), 0, -1):
            held += sum(int(a.split("=")[1]) for a in raw.decode().split("|")[2].split(";"))
        level = (await engine.inventory(name)).total
        assert level.reserved == held, (name, level, held)
        assert level.reserved + level.committed <= level.on_hand, (name, level)


async def _until(check: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def _is(engine: ReservationEngine, partition: int, state: str) -> bool:
    return (await state_of(engine, partition)).state == state
