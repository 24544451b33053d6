"""The sync worker against real Redis and Postgres: exactly once, claims, trims, poison, lag."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
import redis.asyncio

from engine.streams import CONSUMER_GROUP, partition_lag
from engine.types import CartLine, FulfilLine
from flashsale.settings import Settings
from sync_worker.consumer import StreamConsumer
from sync_worker.db import libpq_url
from sync_worker.worker import SyncWorker
from tests.worker_support import (
    Auditor,
    Load,
    assert_consistent,
    ledger_keys,
    running_worker,
    seed,
    start_engine,
    wait_synced,
)


def query(cfg: Settings, sql: str, *args: object) -> list[tuple[Any, ...]]:
    assert cfg.database_url
    with psycopg.connect(libpq_url(cfg.database_url)) as conn:
        return conn.execute(sql, args).fetchall()


async def test_every_event_lands_once_and_postgres_matches_redis(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    auditor = Auditor(engine.redis, engine.keys)
    await auditor.create()
    await seed(engine)
    await engine.reserve("a1", "c1", [CartLine("apple", 2), CartLine("banana", 1)])
    await engine.commit("a1", "o1")
    await engine.fulfil("a1", [FulfilLine("apple", 1)], fulfilment_id="ship-1")
    await engine.reserve("a2", "c2", [CartLine("cherry", 3)])
    await engine.extend("a2", 60)
    await engine.reserve("a3", "c3", [CartLine("damson", 1)])
    await engine.release("a3")
    async with running_worker(cfg):
        await wait_synced(engine.redis, engine.keys)
    await auditor.drain()
    await assert_consistent(engine, cfg, auditor.seen)
    rows = set(query(cfg, "SELECT reservation_id, status FROM reservations"))
    assert rows == {("a1", "committed"), ("a2", "held"), ("a3", "released")}
    parts = query(cfg, "SELECT partition FROM reservations WHERE reservation_id = 'a1'")
    assert sorted(p for (p,) in parts) == sorted(
        {engine.keys.for_sku("apple").number, engine.keys.for_sku("banana").number}
    )  # one row per partition the cart spans
    (ext,) = query(cfg, "SELECT extensions FROM reservations WHERE reservation_id = 'a2'")
    assert ext == (1,)
    lines = query(
        cfg,
        "SELECT sku, quantity, fulfilled FROM reservation_lines WHERE reservation_id = 'a1' "
        "ORDER BY sku, line_no, alloc_no",
    )
    assert lines == [("apple", 2, 1), ("banana", 1, 0)]
    fulfilments = query(
        cfg,
        "SELECT fulfilments FROM reservations WHERE reservation_id = 'a1' "
        "AND fulfilments <> '{}'::jsonb",
    )
    assert fulfilments == [({"ship-1": [["apple", 1, "north"]]},)]
    await engine.aclose()


async def test_a_redelivered_batch_changes_nothing(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    await engine.reserve("r1", "c1", [CartLine("apple", 2)])
    assert cfg.database_url
    client = redis.asyncio.Redis.from_url(str(cfg.redis_url))
    worker = SyncWorker(client, cfg.database_url, cfg, "once")
    await worker.fences.check()  # run() does this on its own: Postgres accepts this Redis
    await worker.streams.ensure_groups()
    batch = await worker.streams.read_new()
    first = await worker.process(batch)
    again = await worker.process(batch)  # as after a crash between COMMIT and XACK
    assert first.inserted == len(batch) and first.duplicates == 0
    assert again.inserted == 0 and again.duplicates == len(batch)
    assert len(ledger_keys(cfg.database_url)) == len(batch)
    levels = query(cfg, "SELECT sku, location, reserved FROM inventory_levels WHERE reserved > 0")
    assert levels == [("apple", "north", 2)]
    await client.aclose()
    await engine.aclose()


async def test_entries_of_a_dead_consumer_are_claimed(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    dead = StreamConsumer(engine.redis, engine.keys, "dead", 1000, 10, 200)
    await dead.ensure_groups()
    taken = await dead.read_new()  # delivered, never acknowledged: the consumer "crashed"
    assert taken
    async with running_worker(cfg, "heir"):
        await wait_synced(engine.redis, engine.keys)
    assert cfg.database_url
    assert set(ledger_keys(cfg.database_url)) == {(e.partition, e.stream_id) for e in taken}
    await engine.aclose()


async def test_trim_never_drops_what_is_not_acknowledged(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    part = engine.keys.for_sku("apple")
    slow = StreamConsumer(engine.redis, engine.keys, "slow", 3, 10, 10**9)
    await slow.ensure_groups()
    held = [e for e in await slow.read_new() if e.partition == part.number]
    for n in range(20):
        await engine.reserve(f"t{n}", "c", [CartLine("apple", 1)])
    worker_cfg = cfg.model_copy(update={"worker_claim_idle_ms": 10**9})  # never claims
    async with running_worker(worker_cfg, "trimmer") as worker:
        await asyncio.sleep(0.5)
        await worker.streams.trim()
        oldest = min(held, key=lambda e: tuple(map(int, e.stream_id.split("-"))))
        first: Any = await engine.redis.xrange(part.events, count=1)
        assert first[0][0].decode() == oldest.stream_id  # kept: still pending for "slow"
        await slow.ack(held)
        await asyncio.sleep(1.2)  # an upkeep round
        await worker.streams.trim()
        assert await engine.redis.xlen(part.events) <= 1  # only the last delivered entry
        trimmed = worker.metrics.registry.get_sample_value("flashsale_sync_trimmed_entries_total")
        assert trimmed and trimmed > 20
    await engine.aclose()


async def test_a_poison_event_is_parked_and_the_partition_moves_on(
    cfg: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    stream = engine.keys.partition(0).events
    await engine.redis.xadd(stream, {"type": "reserved", "sku": "x", "ts": "not-a-number"})
    await engine.redis.xadd(stream, {"type": "teleported", "sku": "x"})
    await engine.reserve("after", "c1", [CartLine("banana", 1)])
    async with running_worker(cfg):
        await wait_synced(engine.redis, engine.keys)
    dead = query(cfg, "SELECT partition, error FROM sync_dead_letters ORDER BY id")
    assert [p for p, _ in dead] == [0, 0]
    assert "missing fields" in str(dead[0][1])
    assert "POISON" in caplog.text
    assert query(cfg, "SELECT status FROM reservations WHERE reservation_id = 'after'") == [
        ("held",)
    ]
    lag = await partition_lag(engine.redis, engine.keys)
    assert all(p.pending == 0 for p in lag)
    await engine.aclose()


async def test_a_row_postgres_refuses_alone_is_dead_lettered(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    bad = {
        "type": "restocked",
        "sku": "apple",
        "location": "north",
        "d_on_hand": "1",
        "d_reserved": "0",
        "d_committed": "0",
        "on_hand": "-5",
        "reserved": "0",
        "committed": "0",
        "available": "-5",
        "reservation_id": "",
        "order_id": "",
        "customer_id": "",
        "reason": "restock",
        "reference": "",
        "backordered": "0",
        "expires_at": "",
        "data": "",
        "ts": "1",
    }
    await engine.redis.xadd(engine.keys.for_sku("apple").events, bad)  # type: ignore[arg-type]
    async with running_worker(cfg):
        await wait_synced(engine.redis, engine.keys)
        await engine.restock("apple", "north", 5)
        await wait_synced(engine.redis, engine.keys)
    (error,) = query(cfg, "SELECT error FROM sync_dead_letters")
    assert "CheckViolation" in str(error[0])
    (on_hand,) = query(
        cfg, "SELECT on_hand FROM inventory_levels WHERE sku='apple' AND location='north'"
    )
    assert on_hand == (205,)
    await engine.aclose()


async def test_lag_counts_pending_and_unsynced_age(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    before = await partition_lag(engine.redis, engine.keys)
    assert not any(p.group_exists for p in before)
    assert sum(p.length for p in before) > 0
    await asyncio.sleep(0.05)
    reader = StreamConsumer(engine.redis, engine.keys, "r", 2, 10, 10**9)
    await reader.ensure_groups()
    await reader.read_new()
    lag = await partition_lag(engine.redis, engine.keys)
    assert sum(p.pending for p in lag) > 0
    assert max(p.oldest_unsynced_age_ms for p in lag) >= 50
    await engine.redis.xgroup_destroy(engine.keys.partition(0).events, CONSUMER_GROUP)
    await engine.redis.xgroup_destroy(engine.keys.partition(1).events, CONSUMER_GROUP)
    async with running_worker(cfg):
        await wait_synced(engine.redis, engine.keys)
    after = await partition_lag(engine.redis, engine.keys)
    assert all(p.synced and p.oldest_unsynced_age_ms == 0 for p in after)
    await engine.aclose()


async def test_two_workers_at_once_agree_with_redis(cfg: Settings) -> None:
    """Batches of one partition commit out of order across workers: levels and reservations
    still end as Redis has them."""
    cfg = cfg.model_copy(update={"worker_batch_size": 7})
    engine = await start_engine(cfg)
    auditor = Auditor(engine.redis, engine.keys)
    await auditor.create()
    await seed(engine)
    load, stop = Load(engine), asyncio.Event()
    async with running_worker(cfg, "left"), running_worker(cfg, "right"):
        task = asyncio.gather(load.run(stop), auditor.run(stop))
        await asyncio.sleep(3)
        stop.set()
        await task
        await wait_synced(engine.redis, engine.keys)
    assert load.ok > 100
    await assert_consistent(engine, cfg, auditor.seen)
    await engine.aclose()
