"""`reconcile` finds every difference between Redis and Postgres, and only real ones."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from typer.testing import CliRunner

from engine.types import CartLine
from flashsale.cli import app
from flashsale.settings import Settings
from sync_worker.db import connect, libpq_url
from sync_worker.reconcile import ReconcileResult, reconcile
from tests.worker_support import running_worker, seed, start_engine, wait_synced


async def check(cfg: Settings, deep: bool = False) -> ReconcileResult:
    assert cfg.database_url
    engine = await start_engine(cfg)
    async with await connect(cfg.database_url) as conn:
        result = await reconcile(engine.redis, conn, engine.keys, deep=deep)
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
    assert [(d.sku, d.field, d.redis, d.postgres) for d in result.drifts] == [
        ("apple", "reserved", 0, 3)
    ]
    await engine.aclose()


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
