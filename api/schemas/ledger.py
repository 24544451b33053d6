"""Bodies of the ledger read, /v1/inventory/{sku}/transactions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TransactionOut(BaseModel):
    """One ledger row: a change of one SKU-location and the quantities after it."""

    id: int = Field(description="Ledger row id; pass the last one seen as `cursor`.")
    partition: int
    stream_id: str
    type: str = Field(description="reserved, committed, fulfilled, released, expired, …")
    sku: str
    location: str | None
    d_on_hand: int | None
    d_reserved: int | None
    d_committed: int | None
    on_hand: int | None
    reserved: int | None
    committed: int | None
    available: int | None
    reservation_id: str | None
    order_id: str | None
    customer_id: str | None
    reason: str | None
    reference: str | None
    backordered: int | None
    expires_at: datetime | None = Field(None, description="New deadline (reserved, extended).")
    data: Any = None
    occurred_at: datetime | None
    recorded_at: datetime | None


class TransactionPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "s1",
                    "transactions": [
                        {
                            "id": 42,
                            "partition": 0,
                            "stream_id": "1735732800000-0",
                            "type": "fulfilled",
                            "sku": "s1",
                            "location": "wh-1",
                            "d_on_hand": -1,
                            "d_reserved": 0,
                            "d_committed": -1,
                            "on_hand": 99,
                            "reserved": 0,
                            "committed": 0,
                            "available": 99,
                            "reservation_id": "r-1",
                            "order_id": "o-1001",
                            "customer_id": "c1",
                            "reason": None,
                            "reference": None,
                            "backordered": 0,
                            "expires_at": None,
                            "data": None,
                            "occurred_at": "2025-01-01T12:00:00Z",
                            "recorded_at": "2025-01-01T12:00:00.050000Z",
                        }
                    ],
                    "next_cursor": 41,
                }
            ]
        }
    )

    sku: str
    transactions: list[TransactionOut] = Field(description="Newest first.")
    next_cursor: int | None = Field(description="Pass as `cursor` for older rows; null at the end.")
