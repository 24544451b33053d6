"""After Redis loss, `restore` puts grouped SKUs back in their group's partition and rewrites the
placement directory; reconcile finds them there, and the sale goes on."""

from __future__ import annotations

import redis.asyncio

from engine.keys import placement
from engine.types import CartLine, LocationConfig, SkuConfig
from flashsale.settings import Settings
from sync_worker.db import connect
from sync_worker.reconcile import reconcile_urls
from sync_worker.restore import run_restore
from tests.test_placement import GROUP, PARTITIONS, scattered
from tests.worker_support import assert_consistent, running_worker, start_engine, wait_synced


def stock(on_hand: int, group: str | None = None) -> SkuConfig:
    return SkuConfig(locations=(LocationConfig("north", on_hand=on_hand),), placement_group=group)


async def test_restore_keeps_grouped_skus_in_their_partition(cfg: Settings) -> None:
    assert cfg.database_url and cfg.redis_url
    cfg = cfg.model_copy(update={"partitions": PARTITIONS})
    first, second, loner = scattered(3)
    engine = await start_engine(cfg)
    home = engine.keys.placed("", GROUP)
    async with running_worker(cfg):
        await engine.configure_sku(first, stock(20, GROUP))
        await engine.configure_sku(second, stock(20, GROUP))
        await engine.configure_sku(loner, stock(20))
        await engine.reserve("held", "ann", [CartLine(first, 2), CartLine(second, 1)], 600)
        await engine.reserve("bought", "bob", [CartLine(first, 3), CartLine(second, 4)], 600)
        await engine.commit("bought", "order-1")
        await engine.reserve("mixed", "cy", [CartLine(second, 1), CartLine(loner, 1)], 600)
        await wait_synced(engine.redis, engine.keys)
    before = {name: await engine.inventory(name) for name in (first, second, loner)}
    await engine.aclose()

    await engine.redis.flushall()  # Redis lost everything, the directory too
    async with redis.asyncio.Redis.from_url(cfg.redis_url) as client:
        async with await connect(cfg.database_url) as conn:
            report, _ = await run_restore(client, conn, cfg, force=False)
    assert report.warnings == [] and report.skus == 3
    checked = await reconcile_urls(cfg.partitions, cfg.redis_url, cfg.database_url, deep=True)
    assert checked.drifts == [] and checked.skus == 3

    engine = await start_engine(cfg)  # a fresh process: it reads the rebuilt directory
    assert await engine.redis.get(placement(first)) == GROUP.encode()
    assert await engine.redis.get(placement(loner)) == b""
    for name in (first, second):
        assert await engine.redis.exists(home.sku(name)) == 1
    assert await engine.redis.exists(engine.keys.for_sku(loner).sku(loner)) == 1
    assert {name: await engine.inventory(name) for name in (first, second, loner)} == before
    assert before[first].config.placement_group == GROUP

    async with running_worker(cfg):
        await engine.commit("held", "order-2")
        again = await engine.reserve("again", "dee", [CartLine(first, 1), CartLine(second, 1)])
        assert again.status == "held"
        held_in = [
            p.number for p in engine.keys.all() if await engine.redis.exists(p.reservation("again"))
        ]
        assert held_in == [home.number]
        await engine.commit("again", "order-3")
        await engine.release("mixed")
        assert (await engine.inventory(first)).total.committed == 2 + 3 + 1
        await wait_synced(engine.redis, engine.keys)
    await assert_consistent(engine, cfg)
    await engine.aclose()
