"""The demo flash sale `flashsale dev` seeds: one hot SKU over two warehouses, ready to sell."""

from __future__ import annotations

from engine.config import EngineSettings
from engine.engine import ReservationEngine
from engine.types import LocationConfig, SkuConfig

DEMO_SKU = "demo-sneaker"
DEMO_CONFIG = SkuConfig(
    locations=(
        LocationConfig("wh-east", on_hand=60),
        LocationConfig("wh-west", on_hand=40, backorder_limit=10),
    ),
    purchase_limit=2,
    max_active_holds_per_customer=1,
    max_extensions=2,
    low_stock_threshold=10,
    backorder_lead_days=14,
)


async def seed(settings: EngineSettings) -> None:
    """Creates the demo SKU once; a restart keeps whatever stock the last run left."""
    engine = ReservationEngine.from_settings(settings)
    await engine.start()
    try:
        if await engine.sku_config(DEMO_SKU) is None:
            await engine.configure_sku(
                DEMO_SKU, DEMO_CONFIG, reason="received", reference="gid://flashsale/demo"
            )
    finally:
        await engine.aclose()
