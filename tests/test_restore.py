"""Redis loses everything mid-sale: `restore` rebuilds it from Postgres and the sale goes on with
the same availability, the same active holds, the same limits."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
from typer.testing import CliRunner

from engine.engine import ReservationEngine
from engine.errors import PurchaseLimitExceeded, ReservationExpired
from engine.restore import RedisNotEmpty
from engine.types import CartLine, FulfilLine, LocationConfig, Reservation, SkuConfig
from flashsale.cli import app
from flashsale.settings import Settings
from sync_worker.db import connect
from sync_worker.reconcile import reconcile_urls
from sync_worker.restore import run_restore
from tests.worker_support import (
    SKUS,
    Load,
    assert_consistent,
    ledger_keys,
    running_worker,
    seed,
    start_engine,
    wait_synced,
)


async def sale(engine: ReservationEngine) -> list[str]:
    """A sale with a bit of everything; returns the ids of reservations to compare."""
    await seed(engine)
    limited = SkuConfig(locations=(LocationConfig("north", on_hand=50),), purchase_limit=3)
    await engine.configure_sku("limited", limited)
    await engine.configure_sku("elder", SkuConfig(locations=(LocationConfig("north", on_hand=9),)))
    load, stop = Load(engine, seed_=3), asyncio.Event()
    task = asyncio.create_task(load.run(stop))
    await asyncio.sleep(1.5)
    stop.set()
    await task
    await engine.reserve("held", "ann", [CartLine("limited", 2)], 600)
    await engine.reserve("cart", "ann", [CartLine("apple", 2), CartLine("damson", 1)], 600)
    await engine.reserve("bought", "bob", [CartLine("banana", 4), CartLine("cherry", 1)], 600)
    await engine.commit("bought", "order-1")
    await engine.fulfil("bought", [FulfilLine("banana", 1)], fulfilment_id="ship-1")
    await engine.reserve("gone", "cy", [CartLine("damson", 1)], 600)
    await engine.release("gone")
    await engine.reserve("lapsing", "dee", [CartLine("elder", 3)], 1)  # past due, not reclaimed
    return ["held", "cart", "bought", "gone", "lapsing", *load.held[:20], *load.committed[:20]]


async def picture(engine: ReservationEngine, ids: list[str]) -> dict[str, object]:
    async def reservation(rid: str) -> Reservation | None:
        found = await engine.get_reservation(rid)
        return None if found.status == "expired" else found

    levels = {sku: (await engine.inventory(sku)).locations for sku in [*SKUS, "limited"]}
    return {"levels": levels, "reservations": {rid: await reservation(rid) for rid in ids}}


async def test_restore_after_redis_loss_resumes_the_sale(cfg: Settings) -> None:
    assert cfg.database_url and cfg.redis_url
    engine = await start_engine(cfg)
    async with running_worker(cfg):
        ids = await sale(engine)
        await asyncio.sleep(2.1)  # every short hold of the load is due: the reads reclaim them
        before = await picture(engine, ids)  # reads reclaim due holds: let the worker see that
        await wait_synced(engine.redis, engine.keys)
    synced = len(ledger_keys(cfg.database_url))

    await engine.redis.flushall()  # Redis lost everything
    async with redis.asyncio.Redis.from_url(cfg.redis_url) as client:
        async with await connect(cfg.database_url) as conn:
            report, _ = await run_restore(client, conn, cfg, force=False)
            with pytest.raises(RedisNotEmpty):
                await run_restore(client, conn, cfg, force=False)
    assert report.warnings == []
    assert report.skus == len(SKUS) + 2
    checked = await reconcile_urls(cfg.partitions, cfg.redis_url, cfg.database_url, deep=True)
    assert checked.drifts == []
    engine = await start_engine(cfg)  # a fresh process: no cached script or location
    assert await picture(engine, ids) == before

    async with running_worker(cfg):
        # The "lapsing" hold was restored past its deadline: lazy expiry reclaims it now.
        elder = await engine.inventory("elder")
        assert elder.total.reserved == 0
        with pytest.raises(ReservationExpired):
            await engine.commit("lapsing", "too-late")
        # The idempotency record came back too (for a one-partition cart that named no location:
        # the events do not carry the request's fingerprint, restore recomputes it).
        replay = await engine.reserve("held", "ann", [CartLine("limited", 2)], 600)
        assert replay.replayed
        with pytest.raises(PurchaseLimitExceeded):  # ann holds 2 of her 3
            await engine.reserve("greedy", "ann", [CartLine("limited", 2)])
        await engine.commit("held", "order-2")
        await engine.release("cart")
        await engine.fulfil("bought")
        await engine.reserve("fresh", "eve", [CartLine("apple", 1)])
        await wait_synced(engine.redis, engine.keys)
    assert len(ledger_keys(cfg.database_url)) > synced
    await assert_consistent(engine, cfg)
    await engine.aclose()


def test_restore_command_refuses_a_redis_with_data_unless_forced(cfg: Settings) -> None:
    assert cfg.database_url and cfg.redis_url

    async def prepare() -> None:
        engine = await start_engine(cfg)
        async with running_worker(cfg):
            await seed(engine)
            await engine.reserve("r1", "c1", [CartLine("apple", 2)])
            await wait_synced(engine.redis, engine.keys)
        await engine.aclose()

    asyncio.run(prepare())
    env = {
        "FLASHSALE_REDIS_URL": cfg.redis_url,
        "FLASHSALE_DATABASE_URL": cfg.database_url,
        "FLASHSALE_PARTITIONS": str(cfg.partitions),
    }
    runner = CliRunner()
    refused = runner.invoke(app, ["restore"], env=env)
    assert refused.exit_code == 1
    assert "--force" in refused.output
    forced = runner.invoke(app, ["restore", "--force"], env=env)
    assert forced.exit_code == 0, forced.output
    assert "restored 4 SKUs, 1 holds" in forced.output
    assert runner.invoke(app, ["reconcile", "--deep"], env=env).exit_code == 0
    other = runner.invoke(app, ["restore", "--force"], env={**env, "FLASHSALE_PARTITIONS": "3"})
    assert other.exit_code == 1 and "partition" in other.output
