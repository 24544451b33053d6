"""Bodies of /v1/inventory and /v1/skus: stock levels, SKU configuration, on_hand changes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from api.schemas.common import MAX_UNITS, Body, Id, Int, Reason, Reference, Timestamp, Units
from engine.types import AllocationStrategy, Level

_LEVEL_EXAMPLE: dict[str, JsonValue] = {
    "location": "wh-1",
    "on_hand": 100,
    "available": 97,
    "reserved": 2,
    "committed": 1,
    "safety_stock": 0,
    "backorder_limit": 0,
}


class LevelOut(BaseModel):
    location: str = Field(description='The location, or "*" for the total.')
    on_hand: int
    available: int = Field(description="on_hand - reserved - committed - safety_stock")
    reserved: int
    committed: int
    safety_stock: int
    backorder_limit: int

    @classmethod
    def of(cls, level: Level) -> LevelOut:
        return cls(
            location=level.location,
            on_hand=level.on_hand,
            available=level.available,
            reserved=level.reserved,
            committed=level.committed,
            safety_stock=level.safety_stock,
            backorder_limit=level.backorder_limit,
        )


class BackorderOut(BaseModel):
    backordered: bool = Field(description="Nothing left in stock, but backorders are taken.")
    units_available: int = Field(description="Units that may still be sold as backorders.")
    lead_days: int
    ships_in_days: int | None = Field(description="Set while backordered: expected lead time.")
    message: str | None = Field(description='e.g. "ships in 14 days"')


class InventoryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "s1",
                    "locations": [_LEVEL_EXAMPLE],
                    "total": {**_LEVEL_EXAMPLE, "location": "*"},
                    "backorder": {
                        "backordered": False,
                        "units_available": 0,
                        "lead_days": 0,
                        "ships_in_days": None,
                        "message": None,
                    },
                }
            ]
        }
    )

    sku: str
    locations: list[LevelOut]
    total: LevelOut
    backorder: BackorderOut


class StockLevelOut(LevelOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{"sku": "s1", **_LEVEL_EXAMPLE}]})

    sku: str


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


class AdjustmentIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"location": "wh-1", "delta": 50, "reason": "received", "reference": "po://4711"}
            ]
        }
    )

    location: Id
    delta: Int = Field(
        ge=-MAX_UNITS,
        le=MAX_UNITS,
        description="Units added (> 0) or removed (< 0); not 0.",
        json_schema_extra={"not": {"const": 0}},
    )
    reason: Reason
    reference: Reference = ""


class SetOnHandIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"on_hand": 80, "change_from_quantity": 100, "reason": "cycle_count"}]
        }
    )

    on_hand: Units
    change_from_quantity: Units | None = Field(
        None, description="Refused with 409 quantity_stale unless on_hand is this now."
    )
    reason: Reason = "correction"
    reference: Reference = ""
