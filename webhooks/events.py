"""The event types an endpoint subscribes to, and how a ledger row becomes one.

A payload is `{type, timestamp, data}`: `timestamp` is when the change happened (the ledger's
`occurred_at`), `data` names the SKU and location, carries the quantities after the change and
the ledger row id. Reserved and extended holds, and configuration changes, are not sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from engine import events as ledger

LOW_STOCK: Final = "inventory.low_stock"
OUT_OF_STOCK: Final = "inventory.out_of_stock"
BACK_IN_STOCK: Final = "inventory.back_in_stock"
ADJUSTED: Final = "inventory.adjusted"
COMMITTED: Final = "reservation.committed"
RELEASED: Final = "reservation.released"
EXPIRED: Final = "reservation.expired"
FULFILLED: Final = "reservation.fulfilled"
TEST: Final = "webhook.test"  # sent by POST /v1/webhooks/{id}/test whatever the subscription

# Ledger row type → event type. Every on_hand change is `inventory.adjusted`; `data.change`
# says which kind (restocked, adjusted, on_hand_set).
FROM_LEDGER: Final[dict[str, str]] = {
    ledger.LOW_STOCK: LOW_STOCK,
    ledger.OUT_OF_STOCK: OUT_OF_STOCK,
    ledger.BACK_IN_STOCK: BACK_IN_STOCK,
    ledger.RESTOCKED: ADJUSTED,
    ledger.ADJUSTED: ADJUSTED,
    ledger.ON_HAND_SET: ADJUSTED,
    ledger.COMMITTED: COMMITTED,
    ledger.RELEASED: RELEASED,
    ledger.EXPIRED: EXPIRED,
    ledger.FULFILLED: FULFILLED,
}
EVENT_TYPES: Final = (
    LOW_STOCK,
    OUT_OF_STOCK,
    BACK_IN_STOCK,
    ADJUSTED,
    COMMITTED,
    RELEASED,
    EXPIRED,
    FULFILLED,
)

# The ledger columns a payload's `data` carries (besides the row id as `ledger_id`).
DATA_COLUMNS: Final = (
    "sku",
    "location",
    "on_hand",
    "reserved",
    "committed",
    "available",
    "d_on_hand",
    "d_reserved",
    "d_committed",
    "reservation_id",
    "order_id",
    "reason",
    "reference",
)


def payload(row: dict[str, Any]) -> dict[str, Any]:
    """The body sent for a ledger row (its columns by name, as read with a dict row factory)."""
    data = {"ledger_id": row["id"], "change": row["type"]}
    data.update({name: row[name] for name in DATA_COLUMNS})
    return {"type": FROM_LEDGER[row["type"]], "timestamp": _iso(row["occurred_at"]), "data": data}


def test_payload(endpoint_id: str, now: datetime) -> dict[str, Any]:
    return {"type": TEST, "timestamp": _iso(now), "data": {"endpoint_id": endpoint_id}}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
