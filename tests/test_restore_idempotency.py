"""After a restore from Postgres, idempotent retries of stock operations and fulfilments still
answer their first answer and apply nothing twice."""

from __future__ import annotations

import pytest
import redis.asyncio

from engine.engine import ReservationEngine
from engine.errors import IdempotencyConflict
from engine.types import CartLine, FulfilLine
from flashsale.settings import Settings
from sync_worker.db import connect
from sync_worker.restore import run_restore
from tests.worker_support import running_worker, seed, start_engine, wait_synced


async def restored(engine: ReservationEngine, cfg: Settings) -> ReservationEngine:
    """Redis loses everything and is rebuilt from Postgres; a fresh engine (a new process)."""
    assert cfg.database_url and cfg.redis_url
    await engine.redis.flushall()
    await engine.aclose()
    async with redis.asyncio.Redis.from_url(cfg.redis_url) as client:
        async with await connect(cfg.database_url) as conn:
            report, _ = await run_restore(client, conn, cfg, force=False)
    assert report.warnings == []
    return await start_engine(cfg)


async def test_retried_stock_changes_and_fulfilments_answer_as_before_a_restore(
    cfg: Settings,
) -> None:
    engine = await start_engine(cfg)
    async with running_worker(cfg):
        await seed(engine)
        restock = await engine.restock("apple", "north", 7, idempotency_key="po-1")
        adjust = await engine.adjust("apple", "north", -3, reason="damaged", idempotency_key="d-1")
        await engine.reserve("bought", "bob", [CartLine("banana", 4)], 600)
        await engine.commit("bought", "order-1")
        some = await engine.fulfil("bought", [FulfilLine("banana", 1)], fulfilment_id="ship-1")
        rest = await engine.fulfil("bought", None, fulfilment_id="ship-2")
        kept = await engine.reserve("kept", "cy", [CartLine("cherry", 1)], 600)
        await wait_synced(engine.redis, engine.keys)

    engine = await restored(engine, cfg)
    try:
        apple = (await engine.inventory("apple")).level("north")
        again = await engine.restock("apple", "north", 7, idempotency_key="po-1")
        assert again == restock
        again = await engine.adjust("apple", "north", -3, reason="damaged", idempotency_key="d-1")
        assert again == adjust
        assert (await engine.inventory("apple")).level("north") == apple  # nothing applied twice
        with pytest.raises(IdempotencyConflict):
            await engine.adjust("apple", "north", -4, reason="damaged", idempotency_key="d-1")

        banana = (await engine.inventory("banana")).total
        replay = await engine.fulfil("bought", [FulfilLine("banana", 1)], fulfilment_id="ship-1")
        assert some.status == "committed"
        assert replay.replayed and replay.lines == rest.lines  # the reservation as it is now
        replay = await engine.fulfil("bought", None, fulfilment_id="ship-2")
        assert replay.replayed and replay.status == rest.status == "fulfilled"
        assert (await engine.inventory("banana")).total == banana
        with pytest.raises(IdempotencyConflict):
            await engine.fulfil("bought", [FulfilLine("banana", 2)], fulfilment_id="ship-1")

        # The incarnation its tokens are bound to came back too: they still open it.
        assert (await engine.get_reservation("kept")).incarnation == kept.incarnation != ""
    finally:
        await engine.aclose()
