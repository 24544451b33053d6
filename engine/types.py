"""Values the engine takes and returns. Plain frozen dataclasses: cheap on the hot path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

AllocationStrategy = Literal["prioritize-sorting-order", "prioritize-high-stock"]
ALLOCATION_STRATEGIES: tuple[str, ...] = ("prioritize-sorting-order", "prioritize-high-stock")
Reason = Literal[
    "received", "restock", "correction", "cycle_count", "damaged", "shrinkage", "other"
]
REASONS: tuple[str, ...] = (
    "received",
    "restock",
    "correction",
    "cycle_count",
    "damaged",
    "shrinkage",
    "other",
)
ReservationStatus = Literal["held", "committed", "fulfilled", "released", "expired"]

# Ids travel inside Redis key names and hold members ("|", ";", "=" separate fields there).
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+\-]{0,63}$")  # fullmatch: "$" admits a "\n"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Integer arithmetic throughout: a float of seconds rounds 23:59:59.999999 up to the next second.
_MIN_MS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MS
_MAX_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MS


def ms_to_datetime(ms: int) -> datetime:
    # Clamped, not refused: a stored time outside datetime's years 1..9999 (written before dates
    # were bounded, or restored from such a ledger) must not make every read of it fail.
    return _EPOCH + timedelta(milliseconds=min(max(ms, _MIN_MS), _MAX_MS))


def datetime_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MS  # exact for any offset, even one whose UTC year is 0 or 10000


@dataclass(frozen=True, slots=True)
class LocationConfig:
    location: str
    on_hand: int | None = None  # None keeps the current value (0 for a new location)
    safety_stock: int = 0
    backorder_limit: int = 0
    incoming: int = 0


@dataclass(frozen=True, slots=True)
class SkuConfig:
    locations: tuple[LocationConfig, ...]
    purchase_limit: int = 0  # units per customer across holds + commits, 0 = none
    max_active_holds_per_customer: int = 0  # 0 = none
    max_extensions: int = 0  # 0 = a hold cannot be extended
    allocation_strategy: AllocationStrategy = "prioritize-sorting-order"
    low_stock_threshold: int = 0
    backorder_lead_days: int = 0
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    # Decides the SKU's partition (every SKU of one group shares one); fixed at creation.
    placement_group: str | None = None


@dataclass(frozen=True, slots=True)
class CartLine:
    sku: str
    quantity: int
    location: str | None = None


@dataclass(frozen=True, slots=True)
class FulfilLine:
    sku: str
    quantity: int
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    location: str
    quantity: int
    backordered: int = 0
    fulfilled: int = 0


@dataclass(frozen=True, slots=True)
class ReservationLine:
    sku: str
    quantity: int
    allocations: tuple[Allocation, ...]

    @property
    def backordered(self) -> int:
        return sum(a.backordered for a in self.allocations)


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    customer_id: str
    status: ReservationStatus
    expires_at: datetime
    lines: tuple[ReservationLine, ...]
    order_id: str | None = None
    extensions: int = 0
    replayed: bool = False  # True when an idempotent retry returned the first answer
    # This use of the id, fixed at creation ("" for one made before incarnations existed): a
    # token binds to it, so a token from an earlier use of a reused id opens nothing.
    incarnation: str = ""


@dataclass(frozen=True, slots=True)
class Level:
    """Quantities of one SKU at one location (or the SKU's total, location "*")."""

    location: str
    on_hand: int
    reserved: int
    committed: int
    safety_stock: int = 0
    backorder_limit: int = 0
    incoming: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.committed - self.safety_stock


@dataclass(frozen=True, slots=True)
class SkuSnapshot:
    sku: str
    config: SkuConfig
    locations: tuple[Level, ...]
    total: Level = field(init=False)

    def __post_init__(self) -> None:
        total = Level(
            location="*",
            on_hand=sum(x.on_hand for x in self.locations),
            reserved=sum(x.reserved for x in self.locations),
            committed=sum(x.committed for x in self.locations),
            safety_stock=sum(x.safety_stock for x in self.locations),
            backorder_limit=sum(x.backorder_limit for x in self.locations),
            incoming=sum(x.incoming for x in self.locations),
        )
        object.__setattr__(self, "total", total)

    def level(self, location: str) -> Level:
        for lvl in self.locations:
            if lvl.location == location:
                return lvl
        raise KeyError(location)
