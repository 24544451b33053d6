"""The events every script appends to its partition stream `{p<N>}:events`, read by the worker.

Every entry has exactly these fields, in this order, all strings (empty when not applicable):

    type            see EVENT_TYPES
    sku, location   the line that changed ("" location for SKU-level events)
    d_on_hand, d_reserved, d_committed     signed integer deltas of this change
    on_hand, reserved, committed, available  the location's quantities after it (for SKU-level
                                             events: 0, 0, 0 and the SKU's total available)
    reservation_id, order_id, customer_id
    reason, reference   for on_hand changes (one of types.REASONS, a reference URI)
    backordered     units of a reserved/committed line taken beyond available (backorder)
    expires_at      ms since the epoch, on reserved and extended events
    data            JSON: the SKU's config on sku_configured; {fp, line} on reserved (the
                    request fingerprint and the cart line, so restore can rebuild replays);
                    {req} on fulfilled with a fulfilment id (the request it stands for); {key,
                    fp, answer} on an on_hand change with an idempotency key (its record)
    ts              ms since the epoch, Redis TIME when the script ran

Summing d_on_hand / d_reserved / d_committed over a SKU-location's events gives its quantities.
"""

from __future__ import annotations

from typing import Final

FIELDS: Final = (
    "type",
    "sku",
    "location",
    "d_on_hand",
    "d_reserved",
    "d_committed",
    "on_hand",
    "reserved",
    "committed",
    "available",
    "reservation_id",
    "order_id",
    "customer_id",
    "reason",
    "reference",
    "backordered",
    "expires_at",
    "data",
    "ts",
)

# Line events (change quantities of one SKU-location):
RESERVED: Final = "reserved"  # +reserved
EXTENDED: Final = "extended"  # no delta, new expires_at
COMMITTED: Final = "committed"  # -reserved +committed
FULFILLED: Final = "fulfilled"  # -committed -on_hand
RELEASED: Final = "released"  # -reserved (a hold) or -committed (a cancelled order)
EXPIRED: Final = "expired"  # -reserved
RESTOCKED: Final = "restocked"  # +on_hand
ADJUSTED: Final = "adjusted"  # ±on_hand
ON_HAND_SET: Final = "on_hand_set"  # ±on_hand (set, or a SKU configured with on_hand)
# SKU-level events (no delta):
SKU_CONFIGURED: Final = "sku_configured"
LOW_STOCK: Final = "low_stock"
OUT_OF_STOCK: Final = "out_of_stock"
BACK_IN_STOCK: Final = "back_in_stock"

EVENT_TYPES: Final = (
    RESERVED,
    EXTENDED,
    COMMITTED,
    FULFILLED,
    RELEASED,
    EXPIRED,
    RESTOCKED,
    ADJUSTED,
    ON_HAND_SET,
    SKU_CONFIGURED,
    LOW_STOCK,
    OUT_OF_STOCK,
    BACK_IN_STOCK,
)
