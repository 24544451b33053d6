"""Bodies of /v1/inventory: stock levels and on_hand changes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from api.schemas.common import MAX_UNITS, Body, Id, Int, Reason, Reference, Units
from engine.types import Level

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
