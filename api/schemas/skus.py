"""Bodies of /v1/skus: a SKU's configuration, in and out, and the listing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Body, Id, Timestamp, Units
from api.schemas.inventory import InventoryOut
from engine.types import AllocationStrategy


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def kept(new: Any, meaning: str = "", of: str = "SKU") -> Any:
    """A member that keeps its current value when omitted; `new` applies to a new SKU (or
    location) only, so the schema shows no default: one would read as "omitted means this"."""
    lead = f"{meaning} " if meaning else ""
    description = f"{lead}Omitted: keep the current value ({new} for a new {of})."
    return Field(new, description=description, json_schema_extra=_no_default)


class LocationIn(Body):
    location: Id
    on_hand: Units | None = Field(
        None, description="Omitted: keep the current value.", json_schema_extra=_no_default
    )
    safety_stock: Units = kept(0, "Units never offered online.", of="location")
    backorder_limit: Units = kept(0, "How far available may go below zero.", of="location")
    incoming: Units = kept(0, "Units expected (informational).", of="location")


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
                    "placement_group": None,
                }
            ]
        }
    )

    locations: list[LocationIn] = Field(
        default_factory=list,
        min_length=1,
        max_length=256,
        description="In priority order. Omitted: keep the current value (the current locations).",
    )
    purchase_limit: Units = kept(0, "Per customer, held + committed; 0 = none.")
    allocation_strategy: AllocationStrategy = kept("prioritize-sorting-order")
    low_stock_threshold: Units = kept(0, "Emit low_stock when available drops to it; 0 = off.")
    backorder_lead_days: Units = kept(0, "Days a backordered unit takes, shown to buyers.")
    sale_starts_at: Timestamp | None = kept(None, "Reserve is refused before it; null = open.")
    sale_ends_at: Timestamp | None = kept(None, "Reserve is refused from it on; null = open.")
    max_active_holds_per_customer: Units = kept(0, "Active holds per customer; 0 = no cap.")
    max_extensions: Units = kept(0, "Times one hold may be extended; 0 = never.")
    placement_group: Id | None = kept(
        None,
        "The sale or drop the SKU belongs to: every SKU of one group lives in one partition, so "
        "a cart within one group is atomic on a Redis Cluster; null = none. Fixed when the SKU "
        "is created: another value for an existing SKU is refused (422 placement_group_fixed).",
    )


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
                    "placement_group": "spring-drop",
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
    placement_group: str | None = Field(
        description="The sale or drop deciding the SKU's partition; null = none (its own)."
    )


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
