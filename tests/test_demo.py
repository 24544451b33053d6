"""`flashsale dev` seeds a demo sale that can be bought from, once."""

from __future__ import annotations

from engine import CartLine
from flashsale.demo import DEMO_SKU, seed
from flashsale.settings import Settings
from tests.engine_support import make_engine


async def test_demo_seed_creates_a_sellable_sku_once(redis_client: object, redis_url: str):
    settings = Settings(redis_url=redis_url)
    await seed(settings)
    engine = await make_engine(redis_url)
    try:
        await engine.reserve("r1", "c1", [CartLine(DEMO_SKU, 2)])
        await seed(settings)  # a restart must not reset the stock
        snap = await engine.inventory(DEMO_SKU)
        assert (snap.total.on_hand, snap.total.reserved) == (100, 2)
    finally:
        await engine.aclose()
