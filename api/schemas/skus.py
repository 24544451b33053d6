"""Bodies of /v1/skus: a SKU's configuration, in and out, and the listing."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Body, Id, Timestamp, Units
from api.schemas.inventory import InventoryOut
from engine.types import AllocationStrategy


class LocationIn(Body):
    location: Id
    on_hand: Units | None = Field(None, description="Omitted: keep the current value.")
    safety_stock: Units = 0
    backorder_limit: Units = 0
    incoming: Units = 0


class SkuIn(Body):
    """Omitted members keep their current value (or the default for a new SKU)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "locations": [
                        {
                            "location": "wh-1",
                            "on_hand": 100,
                            "safety_stock": 0,
                            "backorder_limit": 0,
                        }
                    ],
                    "purchase_limit": 0,
                    "allocation_strategy": "prioritize-sorting-order",
                    "low_stock_threshold": 0,
                    "backorder_lead_days": 0,
                    "sale_starts_at": None,
                    "sale_ends_at": None,
                    "max_active_holds_per_customer": 0,
                    "max_extensions": 0,
                }
            ]
        }
    )

    locations: list[LocationIn] = Field(
        default_factory=list, min_length=1, max_length=256, description="In priority order."
    )
    purchase_limit: Units = Field(0, description="Per customer, held + committed; 0 = none.")
    allocation_strategy: AllocationStrategy = "prioritize-sorting-order"
    low_stock_threshold: Units = 0
    backorder_lead_days: Units = 0
    sale_starts_at: Timestamp | None = None
    sale_ends_at: Timestamp | None = None
    max_active_holds_per_customer: Units = Field(0, description="0 = no cap.")
    max_extensions: Units = 0


class LocationOut(BaseModel):
    location: str
    on_hand: int
    safety_stock: int
    backorder_limit: int
    incoming: int


class SkuOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "s1",
                    "locations": [
                        {
                            "location": "wh-1",
                            "on_hand": 100,
                            "safety_stock": 0,
                            "backorder_limit": 0,
                            "incoming": 0,
                        }
                    ],
                    "purchase_limit": 2,
                    "allocation_strategy": "prioritize-sorting-order",
                    "low_stock_threshold": 10,
                    "backorder_lead_days": 14,
                    "sale_starts_at": "2025-01-01T12:00:00Z",
                    "sale_ends_at": None,
                    "max_active_holds_per_customer": 1,
                    "max_extensions": 2,
                }
            ]
        }
    )

    sku: str
    locations: list[LocationOut]
    purchase_limit: int
    allocation_strategy: AllocationStrategy
    low_stock_threshold: int
    backorder_lead_days: int
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    max_active_holds_per_customer: int
    max_extensions: int


class SkuDetailOut(BaseModel):
    """A SKU as configured (the PUT's shape) and its levels (the inventory read's shape)."""

    sku: str
    config: SkuOut
    inventory: InventoryOut
    sold_out: bool = Field(description="Nothing left to sell, not even as a backorder.")
    low_stock: bool = Field(
        description="In stock, at or below low_stock_threshold (never with threshold 0)."
    )


class SkuPage(BaseModel):
    skus: list[SkuDetailOut] = Field(description="In partition order, then by name.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end. With a filter a page "
        "may hold fewer SKUs than `limit` (even none) and still have a next page."
    )
