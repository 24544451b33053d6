"""`reconcile` finds every difference between Redis and Postgres, and only real ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio
from typer.testing import CliRunner

from engine.connection import connect_url
from engine.errors import PartitionRecovering
from engine.keys import KeySchema
from engine.types import CartLine
from flashsale.cli import app
from flashsale.settings import Settings
from sync_worker import migrations
from sync_worker.db import connect, libpq_url
from sync_worker.reconcile import ReconcileResult, _entries, reconcile
from tests.conftest import CLUSTER_PARTITIONS, flush_cluster
from tests.engine_support import kill_redis, redis_of_its_own
from tests.failover_support import copy_aof, put_back_aof
from tests.worker_support import (
    SKUS,
    Load,
    fast,
    running_worker,
    seed,
    start_engine,
    wait_synced,
)


async def check(cfg: Settings, deep: bool = False, **options: Any) -> ReconcileResult:
    assert cfg.database_url
    engine = await start_engine(cfg)
    async with await connect(cfg.database_url) as conn:
        result = await reconcile(engine.redis, conn, engine.keys, deep=deep, **options)
    await engine.aclose()
    return result


async def synced_sale(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    async with running_worker(cfg):
        await seed(engine)
        await engine.reserve("r1", "c1", [CartLine("apple", 2), CartLine("cherry", 1)])
        await engine.commit("r1", "o1")
        await engine.reserve("r2", "c2", [CartLine("banana", 1)])
        await wait_synced(engine.redis, engine.keys)
    await engine.aclose()


async def test_changes_not_yet_synced_are_not_drift(cfg: Settings) -> None:
    await synced_sale(cfg)
    engine = await start_engine(cfg)
    await engine.reserve("r3", "c3", [CartLine("apple", 5)])  # no worker runs now
    await engine.release("r2")
    await engine.restock("damson", "south", 7)
    result = await check(cfg, deep=False)
    assert result.drifts == []
    assert result.unsynced_applied >= 3
    await engine.aclose()


async def test_a_tampered_quantity_or_config_is_drift(cfg: Settings) -> None:
    await synced_sale(cfg)
    engine = await start_engine(cfg)
    part = engine.keys.for_sku("apple")
    await engine.redis.hincrby(part.sku("apple"), "oh:north", 1)  # a unit appeared from nowhere
    await engine.redis.hdel(engine.keys.for_sku("banana").sku("banana"), "rs:north")
    result = await check(cfg)
    drift = {(d.sku, d.location, d.field): (d.redis, d.postgres) for d in result.drifts}
    assert drift == {
        ("apple", "north", "on_hand"): (201, 200),
        ("banana", "north", "reserved"): (0, 1),
    }
    await engine.aclose()


async def test_deep_reconcile_finds_a_ledger_that_does_not_add_up(cfg: Settings) -> None:
    await synced_sale(cfg)
    assert (await check(cfg, deep=True)).drifts == []
    assert cfg.database_url
    with psycopg.connect(libpq_url(cfg.database_url), autocommit=True) as conn:
        conn.execute(  # a row no stream ever carried
            "INSERT INTO inventory_transactions (partition, stream_id, type, sku, location, "
            "d_on_hand, d_reserved, d_committed, on_hand, reserved, committed, available, "
            "backordered, occurred_at) VALUES (0, '1-1', 'adjusted', 'apple', 'north', 4, 0, 0, "
            "204, 0, 0, 204, 0, now())"
        )
    assert (await check(cfg, deep=False)).drifts == []
    deep = await check(cfg, deep=True)
    assert [(d.sku, d.location, d.field, d.postgres) for d in deep.drifts] == [
        ("apple", "north", "ledger sum of on_hand", 204)
    ]


async def test_redis_that_lost_acknowledged_writes_is_caught(cfg: Settings) -> None:
    """As after a crash under appendfsync everysec: Redis comes back older than Postgres."""
    await synced_sale(cfg)
    engine = await start_engine(cfg)
    keys = await engine.redis.keys("*")
    saved: dict[Any, Any] = {key: await engine.redis.dump(key) for key in keys}
    async with running_worker(cfg):
        await engine.reserve("r9", "c9", [CartLine("apple", 3)])
        await wait_synced(engine.redis, engine.keys)
    await engine.redis.flushall()
    for key, value in saved.items():
        await engine.redis.restore(key, 0, value)  # the Redis of before r9
    result = await check(cfg)
    assert result.ahead == [engine.keys.for_sku("apple").number]
    assert [s.partition for s in result.sequences if s.behind] == result.ahead
    assert [(d.sku, d.field, d.redis, d.postgres) for d in result.drifts] == [
        ("apple", "reserved", 0, 3)
    ]
    await engine.aclose()


class RecordingRedis(redis.asyncio.Redis):
    """A real client that remembers every reply it parsed outside a pipeline."""

    replies: list[tuple[str, Any]]

    async def parse_response(self, connection: Any, command_name: Any, **options: Any) -> Any:
        reply = await super().parse_response(connection, command_name, **options)
        self.replies.append((str(command_name).upper(), reply))
        return reply


async def unsynced_backlog(cfg: Settings, restocks: int) -> None:
    """A synced sale, then `restocks` and two more events that no worker syncs."""
    await synced_sale(cfg)
    engine = await start_engine(cfg)
    for n in range(restocks):
        await engine.restock(SKUS[n % len(SKUS)], "north", 1)
    await engine.reserve("r3", "c3", [CartLine("apple", 5)])
    await engine.release("r2")
    await engine.aclose()


async def test_reconcile_pages_through_a_large_unsynced_stream(cfg: Settings) -> None:
    assert cfg.database_url and cfg.redis_url
    await unsynced_backlog(cfg, restocks=60)
    page = 7
    client = RecordingRedis.from_url(cfg.redis_url)
    client.replies = []
    before = await _xrange_calls(client)
    async with await connect(cfg.database_url) as conn:
        result = await reconcile(client, conn, KeySchema(cfg.partitions), page_size=page)
    xranges = [reply for name, reply in client.replies if name == "XRANGE"]
    calls = await _xrange_calls(client) - before
    await client.aclose()

    assert result.drifts == [] and result.unsynced_applied >= 62
    # Every XRANGE went out on its own (none inside the MULTI) and none returned over a page.
    assert calls == len(xranges) >= 62 // page
    assert all(len(reply) <= page for reply in xranges)
    assert all(len(reply) <= page for _, reply in client.replies if isinstance(reply, list))


async def test_paged_reconcile_still_finds_a_real_drift(cfg: Settings) -> None:
    await unsynced_backlog(cfg, restocks=60)
    engine = await start_engine(cfg)
    await engine.redis.hincrby(engine.keys.for_sku("banana").sku("banana"), "oh:north", 5)
    await engine.aclose()
    result = await check(cfg, page_size=7)
    assert [(d.sku, d.location, d.field, d.redis - d.postgres) for d in result.drifts] == [
        ("banana", "north", "on_hand", 5)
    ]


async def test_paged_reconcile_while_the_sale_and_the_worker_run(cfg: Settings) -> None:
    """Events keep arriving and syncing while reconcile pages: no drift is invented."""
    await synced_sale(cfg)
    engine = await start_engine(cfg)
    stop = asyncio.Event()
    load = Load(engine)
    async with running_worker(cfg):
        shoppers = asyncio.create_task(load.run(stop))
        try:
            for _ in range(3):
                await asyncio.sleep(0.2)
                result = await check(cfg, page_size=5)
                assert result.drifts == [], (result.ahead, result.drifts)
        finally:
            stop.set()
            await shoppers
    await engine.aclose()


class TrimmingRedis(redis.asyncio.Redis):
    """Trims the stream past the reader's position before its second page, as a worker may."""

    pages = 0

    async def xrange(self, name: Any, min: Any = "-", max: Any = "+", count: Any = None) -> Any:
        self.pages += 1
        if self.pages == 2:
            await self.xtrim(
                name, minid="7-0", approximate=False
            )  # past the anchor 5-0: 5-0 and 6-0 go unread
        return await super().xrange(name, min, max, count=count)


async def test_paging_notices_entries_trimmed_before_it_read_them(cfg: Settings) -> None:
    assert cfg.redis_url
    for client in (
        TrimmingRedis.from_url(cfg.redis_url, decode_responses=True),
        redis.asyncio.Redis.from_url(cfg.redis_url, decode_responses=True),
    ):
        await client.delete("s")
        for n in range(1, 21):
            await client.xadd("s", {"n": n}, id=f"{n}-0")
        entries, complete = await _entries(client, "s", ("1-0", "20-0"), page_size=5)
        await client.aclose()
        ids = [entry_id for entry_id, _ in entries]
        if isinstance(client, TrimmingRedis):
            assert not complete and ids == ["1-0", "2-0", "3-0", "4-0", "5-0"]
        else:
            assert complete and ids == [f"{n}-0" for n in range(1, 21)]


async def _xrange_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))


def test_the_command_prints_the_drift_and_exits_nonzero(cfg: Settings) -> None:
    assert cfg.database_url and cfg.redis_url
    asyncio.run(synced_sale(cfg))
    env = {
        "FLASHSALE_REDIS_URL": cfg.redis_url,
        "FLASHSALE_DATABASE_URL": cfg.database_url,
        "FLASHSALE_PARTITIONS": str(cfg.partitions),
    }
    runner = CliRunner()
    clean = runner.invoke(app, ["reconcile", "--deep"], env=env)
    assert clean.exit_code == 0, clean.output
    assert "no drift" in clean.output

    async def tamper() -> None:
        engine = await start_engine(cfg)
        await engine.redis.hset(engine.keys.for_sku("cherry").sku("cherry"), "cm:north", "7")
        await engine.aclose()

    asyncio.run(tamper())
    drift = runner.invoke(app, ["reconcile"], env=env)
    assert drift.exit_code == 1
    assert "cherry" in drift.output and "committed" in drift.output
    status = runner.invoke(app, ["worker", "status"], env=env)
    assert status.exit_code == 0 and "synced" in status.output


@pytest.mark.slow
def test_a_partition_rewound_to_an_older_file_fails_reconcile_though_its_levels_agree(
    pg_database_url: str, tmp_path: Path
) -> None:
    """Redis restarted from an older append-only file. The events it lost cancel out (a hold
    made and released), so every level still agrees with Postgres; buyers keep trying. Only the
    partition's sequence shows it: Postgres synced an event id its Redis never reached."""
    migrations.upgrade(pg_database_url)
    with redis_of_its_own(tmp_path / "redis") as server:
        assert server.url
        url = server.url
        cfg = fast(Settings(redis_url=url, database_url=pg_database_url, data_dir=tmp_path / "d"))
        older = tmp_path / "older-aof"

        async def sell_then_rewind() -> int:
            engine = await start_engine(cfg)
            async with running_worker(cfg):
                await seed(engine)
                await engine.reserve("r1", "c1", [CartLine("apple", 2)])
                await engine.commit("r1", "o1")
                await wait_synced(engine.redis, engine.keys)
                copy_aof(server, older)
                await engine.reserve("r2", "c2", [CartLine("apple", 3)])
                await engine.release("r2")  # levels back to what the older file holds
                await wait_synced(engine.redis, engine.keys)
            await engine.aclose()
            kill_redis(server)
            put_back_aof(server, older)
            assert server.start() == url
            engine = await start_engine(cfg)
            try:
                for n in range(3):  # new buyers; nothing verifies the partition meanwhile
                    try:
                        await engine.reserve(f"n{n}", "c3", [CartLine("apple", 1)])
                        raise AssertionError("a rewound partition sold")
                    except PartitionRecovering:
                        pass
                return engine.keys.for_sku("apple").number
            finally:
                await engine.aclose()

        rewound = asyncio.run(sell_then_rewind())
        result = asyncio.run(check(cfg))
        assert result.drifts == []  # the levels cannot tell
        (behind,) = [s for s in result.sequences if s.behind]
        assert behind.partition == rewound and behind.postgres_newest > behind.redis_last
        assert result.failed

        env = {
            "FLASHSALE_REDIS_URL": url,
            "FLASHSALE_DATABASE_URL": pg_database_url,
            "FLASHSALE_PARTITIONS": str(cfg.partitions),
        }
        out = CliRunner().invoke(app, ["reconcile"], env=env)
        assert out.exit_code == 1, out.output
        assert f"partition {rewound} behind Postgres" in out.output
        assert "no drift" not in out.output


@pytest.mark.slow
async def test_every_fence_of_a_cluster_is_read_on_a_client_not_connected_yet(
    redis_cluster_url: str, pg_database_url: str
) -> None:
    """A cluster client connects to the nodes on its first calls (as the sync worker's does):
    reading every partition's fence then works, every time."""
    flush_cluster(redis_cluster_url)
    migrations.upgrade(pg_database_url)
    async with await connect(pg_database_url) as conn:
        for _ in range(5):
            client = connect_url(redis_cluster_url, cluster=True)
            try:
                result = await reconcile(client, conn, KeySchema(CLUSTER_PARTITIONS))
            finally:
                await client.aclose()
            assert not result.failed and result.sequences == []
