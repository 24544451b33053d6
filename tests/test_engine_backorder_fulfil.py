"""Backordered units ship only from units nobody else was promised.

An in-stock order (or hold) was sold units on the shelf; a backordered one was sold units that
had yet to arrive. Shipping the backordered order with the shelf's units would leave the in-stock
one with nothing to ship: a backordered unit ships only once it is in stock, i.e. from what is
available plus the backordered units committed at that location and not yet shipped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from engine import CartLine, FulfilLine, ReservationEngine
from engine import errors as e
from engine.restore import ReservationImage, SkuImage, restore
from engine.types import Allocation, ReservationLine
from tests.engine_support import check_invariants, make_engine, sku


@pytest.fixture
async def engine(redis_client: object, redis_url: str) -> AsyncIterator[ReservationEngine]:
    eng = await make_engine(redis_url)
    yield eng
    await eng.aclose()


async def _order(engine: ReservationEngine, rid: str, quantity: int = 1) -> tuple[int, int]:
    """Reserves and commits `quantity` of "tee"; returns (units, backordered)."""
    res = await engine.reserve(rid, f"c-{rid}", [CartLine("tee", quantity)])
    await engine.commit(rid, f"o-{rid}")
    (alloc,) = res.lines[0].allocations
    return alloc.quantity, alloc.backordered


async def test_a_backorder_cannot_ship_the_unit_of_an_in_stock_order(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(1, backorder_limit={"wh-1": 1}))
    assert await _order(engine, "b") == (1, 0)  # in stock
    assert await _order(engine, "a") == (1, 1)  # backordered
    with pytest.raises(e.BackorderNotInStock) as info:
        await engine.fulfil("a")
    assert info.value.details | {"detail": ""} == {
        "reservation_id": "a",
        "sku": "tee",
        "location": "wh-1",
        "requested": 1,
        "in_stock": 0,
        "detail": "",
    }
    assert (await engine.fulfil("b")).status == "fulfilled"
    with pytest.raises(e.BackorderNotInStock):
        await engine.fulfil("a")
    await engine.restock("tee", "wh-1", 1)
    assert (await engine.fulfil("a")).status == "fulfilled"
    level = (await engine.inventory("tee")).total
    assert (level.on_hand, level.committed, level.available) == (0, 0, 0)
    await check_invariants(engine, ["tee"])


async def test_a_restock_lets_the_backorder_ship_before_the_in_stock_order(
    engine: ReservationEngine,
):
    await engine.configure_sku("tee", sku(1, backorder_limit={"wh-1": 1}))
    await _order(engine, "b")
    await _order(engine, "a")
    with pytest.raises(e.BackorderNotInStock):
        await engine.fulfil("a")
    await engine.restock("tee", "wh-1", 1)
    assert (await engine.fulfil("a")).status == "fulfilled"
    assert (await engine.fulfil("b")).status == "fulfilled"
    level = (await engine.inventory("tee")).total
    assert (level.on_hand, level.committed) == (0, 0)
    await check_invariants(engine, ["tee"])


async def test_units_held_in_stock_are_not_shipped_to_a_backorder(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(1, backorder_limit={"wh-1": 1}))
    await engine.reserve("c", "cust-c", [CartLine("tee", 1)])  # in stock, still in the cart
    assert await _order(engine, "a") == (1, 1)
    with pytest.raises(e.BackorderNotInStock):
        await engine.fulfil("a")
    await engine.commit("c", "o-c")
    assert (await engine.fulfil("c")).status == "fulfilled"
    await check_invariants(engine, ["tee"])


async def test_an_order_partly_in_stock_ships_its_in_stock_units_first(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(1, backorder_limit={"wh-1": 2}))
    assert await _order(engine, "a", 3) == (3, 2)
    cart = await engine.fulfil("a", [FulfilLine("tee", 1)])
    assert cart.status == "committed"
    with pytest.raises(e.BackorderNotInStock) as info:
        await engine.fulfil("a", [FulfilLine("tee", 1)])
    assert (info.value.requested, info.value.in_stock) == (1, 0)
    with pytest.raises(e.BackorderNotInStock):  # the whole rest: all or nothing
        await engine.fulfil("a")
    await engine.restock("tee", "wh-1", 1)
    await engine.fulfil("a", [FulfilLine("tee", 1)])
    with pytest.raises(e.BackorderNotInStock):
        await engine.fulfil("a")
    await engine.restock("tee", "wh-1", 1)
    assert (await engine.fulfil("a")).status == "fulfilled"
    await check_invariants(engine, ["tee"])


async def test_a_cancelled_backorder_no_longer_counts_as_backordered(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(0, backorder_limit={"wh-1": 1}))
    assert await _order(engine, "a") == (1, 1)
    await engine.release("a")  # the backordered order is cancelled
    await engine.restock("tee", "wh-1", 1)
    assert await _order(engine, "b") == (1, 0)
    assert await _order(engine, "e") == (1, 1)
    with pytest.raises(e.BackorderNotInStock):  # the one unit is b's
        await engine.fulfil("e")
    assert (await engine.fulfil("b")).status == "fulfilled"
    await check_invariants(engine, ["tee"])


async def test_a_restore_keeps_which_committed_units_are_backordered(
    redis_client: object, redis_url: str
):
    """Restore rebuilds the backordered count from the orders: a backorder is not held back
    until every in-stock order has shipped, nor let ship the in-stock orders' units."""
    config = {
        "locations": [
            {
                "location": "wh-1",
                "on_hand": 1,
                "safety_stock": 0,
                "backorder_limit": 1,
                "incoming": 0,
            }
        ],
        "purchase_limit": 0,
        "max_active_holds_per_customer": 0,
        "max_extensions": 0,
        "allocation_strategy": "prioritize-sorting-order",
        "low_stock_threshold": 0,
        "backorder_lead_days": 0,
        "sale_starts_at": None,
        "sale_ends_at": None,
    }

    def order(rid: str, backordered: int) -> ReservationImage:
        alloc = Allocation("wh-1", 1, backordered=backordered)
        return ReservationImage(
            id=rid,
            customer_id=f"c-{rid}",
            status="committed",
            expires_at_ms=1,
            created_at_ms=1,
            lines=(ReservationLine("tee", 1, (alloc,)),),
            order_id=f"o-{rid}",
        )

    engine = await make_engine(redis_url)
    await restore(
        engine.redis,
        engine.settings,
        [SkuImage("tee", config, {"wh-1": 1})],
        [order("b", 0), order("a", 1)],
        {},
        now_ms=int(time.time() * 1000),
    )
    with pytest.raises(e.BackorderNotInStock):
        await engine.fulfil("a")
    await engine.restock("tee", "wh-1", 1)
    assert (await engine.fulfil("a")).status == "fulfilled"
    assert (await engine.fulfil("b")).status == "fulfilled"
    await engine.aclose()
