"""A sale through the whole stack: engine → stream → sync worker → ledger → dispatcher →
a receiver verifying every signature. Two dispatchers run at once, so repeats may arrive; after
dropping them by webhook-id the receiver has each threshold crossing once, in order per SKU.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import psycopg
import pytest

from engine.engine import ReservationEngine
from engine.errors import EngineError
from engine.types import CartLine, LocationConfig, SkuConfig
from flashsale.settings import Settings
from tests.webhooks_support import (
    ALL_EVENTS,
    eventually,
    libpq,
    receiving,
    running_dispatcher,
)
from tests.worker_support import running_worker, start_engine, wait_synced
from webhooks import events, store

THRESHOLDS = {"inventory.low_stock", "inventory.out_of_stock", "inventory.back_in_stock"}


async def sell_out_and_back(engine: ReservationEngine, sku: str, on_hand: int) -> list[str]:
    """Holds until refused, a few commits, a release (back in stock), one more hold (out of
    stock again), a restock (back in stock). Returns the threshold events it must cause."""
    await engine.configure_sku(
        sku, SkuConfig(locations=(LocationConfig("wh-1", on_hand=on_hand),), low_stock_threshold=2)
    )
    held: list[str] = []
    n = 0
    while True:
        n += 1
        try:
            await engine.reserve(f"{sku}-r{n}", f"c{n}", [CartLine(sku, 1)])
        except EngineError:
            break
        held.append(f"{sku}-r{n}")
    assert len(held) == on_hand
    for rid in held[:3]:
        await engine.commit(rid, f"order-{rid}")
    await engine.release(held[-1])  # available 1: back in stock (and low)
    await engine.reserve(f"{sku}-again", "c-again", [CartLine(sku, 1)])  # out again
    await engine.restock(sku, "wh-1", 10)  # back in stock, above the threshold
    return [
        "inventory.low_stock",
        "inventory.out_of_stock",
        "inventory.back_in_stock",
        "inventory.out_of_stock",
        "inventory.back_in_stock",
    ]


@pytest.mark.slow
async def test_a_sale_to_sold_out_and_back_sends_each_crossing_once_in_order_per_sku(
    cfg: Settings,
) -> None:
    assert cfg.database_url
    engine = await start_engine(cfg)
    try:
        async with receiving(delay=0.005) as receiver:
            async with await psycopg.AsyncConnection.connect(
                libpq(cfg.database_url), autocommit=True
            ) as conn:
                endpoint = await store.create_endpoint(conn, receiver.url, ALL_EVENTS, "sale")
            receiver.secret = endpoint["secret"]
            async with (
                running_worker(cfg),
                running_dispatcher(cfg.database_url),
                running_dispatcher(cfg.database_url),
            ):
                expected = {}
                for sku, on_hand in (("sneaker", 6), ("cap", 4), ("scarf", 5)):
                    expected[sku] = await sell_out_and_back(engine, sku, on_hand)
                await wait_synced(engine.redis, engine.keys)
                with psycopg.connect(libpq(cfg.database_url)) as sync_conn:
                    ledger = sync_conn.execute(
                        "SELECT id, type FROM inventory_transactions ORDER BY id"
                    ).fetchall()
                sent = [(i, t) for i, t in ledger if t in events.FROM_LEDGER]
                await eventually(lambda: len(receiver.unique()) == len(sent), 30, "every event")
                await asyncio.sleep(0.3)  # any repeat still in flight arrives too
    finally:
        await engine.aclose()

    assert not receiver.rejected  # every request verified
    received = receiver.unique()
    assert sorted(m.ledger_id for m in received) == [i for i, _ in sent]
    per_sku: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for message in received:
        per_sku[message.sku].append((message.ledger_id, message.payload["type"]))
    for sku, crossings in expected.items():
        ids = [ledger_id for ledger_id, _ in per_sku[sku]]
        assert ids == sorted(ids), f"{sku}: out of ledger order"
        assert [t for _, t in per_sku[sku] if t in THRESHOLDS] == crossings, sku
        kinds = {t for _, t in per_sku[sku]}
        assert {"reservation.committed", "reservation.released", "inventory.adjusted"} <= kinds
