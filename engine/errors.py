"""Every error the engine raises, one tree.

    FlashsaleError
    ├── ConfigurationError            settings or servers unusable (one line, names the variable)
    └── EngineError                   a refusal from a script; `.code` is the script's error code
        ├── InvalidRequest            invalid_request (detail, field): malformed ids, reasons, …
        ├── InvalidQuantity           invalid_quantity (sku, quantity, max?, location?)
        ├── TtlOutOfRange             ttl_out_of_range (ttl_seconds, min, max)
        ├── UnknownSku                unknown_sku (sku)
        ├── UnknownLocation           unknown_location (sku, location)
        ├── InsufficientStock         insufficient_stock (sku, location, requested, available)
        ├── PurchaseLimitExceeded     purchase_limit_exceeded (sku, limit, remaining)
        ├── TooManyHolds              too_many_holds (sku, limit)
        ├── SaleNotStarted            sale_not_started (sku, sale_starts_at)
        ├── SaleEnded                 sale_ended (sku, sale_ends_at)
        ├── ReservationNotFound       reservation_not_found (reservation_id)
        ├── ReservationExpired        reservation_expired (reservation_id, expired_at)
        ├── InvalidState              invalid_state (reservation_id, status, expected)
        ├── ExtensionLimit            extension_limit (reservation_id, limit)
        ├── IdempotencyConflict       idempotency_conflict (whichever was reused, see the class)
        ├── OverFulfil                over_fulfil (sku, location, requested, remaining)
        ├── QuantityStale             quantity_stale (sku, location, expected, current)
        ├── InvariantViolation        invariant_violation (sku, location, detail, on_hand?)
        ├── QuantityTooLarge          quantity_too_large (sku, location, total, value, limit)
        ├── BackorderNotInStock       backorder_not_in_stock (reservation_id, sku, location,
        │                             requested, in_stock)
        ├── PlacementGroupFixed       placement_group_fixed (sku, placement_group?, requested?)
        ├── PartitionRecovering       partition_recovering (partition, fenced): the partition's
        │                             Redis is not verified against Postgres yet (engine.fencing)
        └── NotReplicated             not_replicated (partition, replicas, required): zero-loss
                                      mode, fewer replicas than required confirmed a write

Scripts answer `{err = "<code>", ...details}`; :func:`error_from_reply` maps the code to the class.
Each refusal is a dataclass: its fields are the details the API lists as problem members (a
field left None is not one of them), and `str(error)` is the sentence for a person that the API's
problem `detail` and the CLI both print.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

from engine.types import ms_to_datetime

# A field with this metadata travels on the exception but is no detail of the refusal.
_NOT_A_DETAIL = {"detail": False}


class FlashsaleError(Exception):
    """Root of everything flashsale raises on purpose."""


class ConfigurationError(FlashsaleError):
    """Settings or servers are unusable; the message is one line that names the cause."""


class EngineError(FlashsaleError):
    code: ClassVar[str] = "engine_error"
    _message: str | None = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__()
        self._message = message

    @property
    def details(self) -> dict[str, Any]:
        """The refusal's fields that are set, by name: what the API lists as members."""
        values = ((name, getattr(self, name)) for name in _detail_names(type(self)))
        return {name: value for name, value in values if value is not None}

    def __str__(self) -> str:
        # The text is built only when someone reads it: a sold-out sale raises refusals by the
        # hundred thousand per second, and formatting them showed as 20% of that path's profile.
        return self._message or self.sentence()

    def sentence(self) -> str:
        """What went wrong, for a person; each refusal class words its own."""
        text = ", ".join(f"{k}={v}" for k, v in self.details.items())
        return f"{self.code.replace('_', ' ')}: {text}" if text else self.code.replace("_", " ")


_DETAIL_NAMES: dict[type[EngineError], tuple[str, ...]] = {}


def _detail_names(cls: type[EngineError]) -> tuple[str, ...]:
    names = _DETAIL_NAMES.get(cls)
    if names is None:
        declared: tuple[Field[Any], ...] = fields(cls) if is_dataclass(cls) else ()
        names = tuple(f.name for f in declared if f.metadata.get("detail", True))
        _DETAIL_NAMES[cls] = names
    return names


@dataclass(eq=False)  # an exception compares and hashes by identity
class InvalidRequest(EngineError):
    code = "invalid_request"
    detail: str | None = None
    field: str | None = None

    def sentence(self) -> str:
        return self.detail or "the request is invalid"


@dataclass(eq=False)
class InvalidQuantity(EngineError):
    code = "invalid_quantity"
    sku: str
    quantity: Any  # as the caller sent it: it may be no number at all
    max: int | None = None
    location: str | None = None

    def sentence(self) -> str:
        where = f" at {self.location}" if self.location else ""
        limit = f" (1 to {self.max})" if self.max is not None else ""
        return f"invalid quantity {self.quantity} for {self.sku}{where}{limit}"


@dataclass(eq=False)
class TtlOutOfRange(EngineError):
    code = "ttl_out_of_range"
    ttl_seconds: Any  # as the caller sent it: it may be no number at all
    min: float
    max: float

    def sentence(self) -> str:
        return f"ttl_seconds must be between {self.min:g} and {self.max:g}, got {self.ttl_seconds}"


@dataclass(eq=False)
class UnknownSku(EngineError):
    code = "unknown_sku"
    sku: str

    def sentence(self) -> str:
        return f"no SKU {self.sku}"


@dataclass(eq=False)
class UnknownLocation(EngineError):
    code = "unknown_location"
    sku: str
    location: str

    def sentence(self) -> str:
        return f"SKU {self.sku} has no location {self.location}"


@dataclass(eq=False)
class InsufficientStock(EngineError):
    code = "insufficient_stock"
    sku: str
    location: str
    requested: int
    available: int
    # reserve.lua's hint that the SKU has no unit and no backorder room left anywhere: the
    # engine's sold-out marks read it; it is no detail of the refusal.
    sold_out: bool = field(default=False, kw_only=True, metadata=_NOT_A_DETAIL)

    def sentence(self) -> str:
        return (
            f"only {self.available} of {self.sku} available{_at(self.location)}, "
            f"{self.requested} requested"
        )


@dataclass(eq=False)
class PurchaseLimitExceeded(EngineError):
    code = "purchase_limit_exceeded"
    sku: str
    limit: int
    remaining: int

    def sentence(self) -> str:
        return (
            f"purchase limit of {self.limit} for {self.sku} reached; "
            f"{self.remaining} more may be bought"
        )


@dataclass(eq=False)
class TooManyHolds(EngineError):
    code = "too_many_holds"
    sku: str
    limit: int

    def sentence(self) -> str:
        return f"at most {self.limit} active holds on {self.sku}"


@dataclass(eq=False)
class SaleNotStarted(EngineError):
    code = "sale_not_started"
    sku: str
    sale_starts_at: int  # ms since the epoch

    def sentence(self) -> str:
        return f"the sale of {self.sku} has not started: it opens at {_when(self.sale_starts_at)}"


@dataclass(eq=False)
class SaleEnded(EngineError):
    code = "sale_ended"
    sku: str
    sale_ends_at: int  # ms since the epoch

    def sentence(self) -> str:
        return f"the sale of {self.sku} has ended: it closed at {_when(self.sale_ends_at)}"


@dataclass(eq=False)
class ReservationNotFound(EngineError):
    code = "reservation_not_found"
    reservation_id: str

    def sentence(self) -> str:
        return f"no reservation {self.reservation_id}"


@dataclass(eq=False)
class ReservationExpired(EngineError):
    code = "reservation_expired"
    reservation_id: str
    expired_at: int  # ms since the epoch

    def sentence(self) -> str:
        return f"reservation {self.reservation_id} expired at {_when(self.expired_at)}"


@dataclass(eq=False)
class InvalidState(EngineError):
    code = "invalid_state"
    reservation_id: str
    status: str
    expected: str

    def sentence(self) -> str:
        return f"reservation {self.reservation_id} is {self.status}, expected {self.expected}"


@dataclass(eq=False)
class IncarnationMismatch(EngineError):
    """The caller's token was issued for an earlier use of this reservation id (an id may be
    used again once a finished reservation has left Redis): it opens nothing now."""

    code = "incarnation_mismatch"
    reservation_id: str

    def sentence(self) -> str:
        return f"the token was issued for an earlier reservation {self.reservation_id}"


@dataclass(eq=False)
class ExtensionLimit(EngineError):
    code = "extension_limit"
    reservation_id: str
    limit: int

    def sentence(self) -> str:
        return f"reservation {self.reservation_id} may be extended {self.limit} times"


@dataclass(eq=False)
class IdempotencyConflict(EngineError):
    """One of the fields names what was reused: a reservation (with the order it has), a
    fulfilment id, or a stock operation's idempotency key."""

    code = "idempotency_conflict"
    reservation_id: str | None = None
    order_id: str | None = None
    fulfilment_id: str | None = None
    idempotency_key: str | None = None
    key: str | None = None  # the Redis key of a stock operation's record, as the script sends it

    def sentence(self) -> str:
        return "this idempotency key was used for a different request"


@dataclass(eq=False)
class OverFulfil(EngineError):
    code = "over_fulfil"
    sku: str
    location: str
    requested: int
    remaining: int

    def sentence(self) -> str:
        return (
            f"{self.requested} of {self.sku}{_at(self.location)} requested, "
            f"{self.remaining} left to fulfil"
        )


@dataclass(eq=False)
class QuantityStale(EngineError):
    code = "quantity_stale"
    sku: str
    location: str
    expected: int
    current: int

    def sentence(self) -> str:
        return (
            f"on_hand of {self.sku}{_at(self.location)} is {self.current}, "
            f"not {self.expected} (change_from_quantity)"
        )


@dataclass(eq=False)
class InvariantViolation(EngineError):
    code = "invariant_violation"
    sku: str
    location: str
    detail: str
    on_hand: int | None = None

    def sentence(self) -> str:
        return f"{self.sku}{_at(self.location)}: {self.detail}"


@dataclass(eq=False)
class QuantityTooLarge(EngineError):
    """A stock total would pass the engine's ceiling (engine.validation.QUANTITY_LIMIT)."""

    code = "quantity_too_large"
    sku: str
    location: str
    total: str  # which: on_hand, safety_stock, backorder_limit, incoming, reserved
    value: int  # what it would have become
    limit: int
    detail: str | None = None

    def sentence(self) -> str:
        return (
            f"{self.total} of {self.sku}{_at(self.location)} would become {self.value}, "
            f"above the limit of {self.limit} units"
        )


@dataclass(eq=False)
class BackorderNotInStock(EngineError):
    """Backordered units asked to ship before they are in stock: the units on hand are owed to
    in-stock orders and holds; `in_stock` backordered units could ship now."""

    code = "backorder_not_in_stock"
    reservation_id: str
    sku: str
    location: str
    requested: int  # backordered units the fulfilment would ship at the location
    in_stock: int
    detail: str | None = None

    def sentence(self) -> str:
        return (
            f"{self.requested} backordered unit(s) of {self.sku}{_at(self.location)} are not in "
            f"stock yet (only {self.in_stock} could ship now); restock, then retry"
        )


@dataclass(eq=False)
class PlacementGroupFixed(EngineError):
    """A SKU's placement group decides where its keys live, so it is fixed when the SKU is
    created: configuring it again with another group (or none) is refused and changes nothing."""

    code = "placement_group_fixed"
    sku: str
    placement_group: str | None = None  # the SKU's group; None: it has none
    requested: str | None = None  # the refused one; None: no group

    def sentence(self) -> str:
        return (
            f"SKU {self.sku} is in {_group(self.placement_group)}, not "
            f"{_group(self.requested)}: a placement group is fixed when the SKU is created"
        )


@dataclass(eq=False)
class PartitionRecovering(EngineError):
    """The partition's Redis restarted or failed over and is not yet confirmed to be at least as
    new as Postgres (fenced: it was found behind, and waits for a restore). Nothing was changed;
    reads still answer, and the same request succeeds once the partition is verified."""

    code = "partition_recovering"
    partition: int
    fenced: bool = False

    def sentence(self) -> str:
        if self.fenced:
            return (
                f"partition {self.partition} is fenced: its Redis is behind Postgres and sells "
                "again once it is restored from Postgres"
            )
        return (
            f"partition {self.partition} is being verified after a Redis restart or failover; "
            "retry shortly"
        )


@dataclass(eq=False)
class NotReplicated(EngineError):
    """Zero-loss mode (`redis_min_replicas_ack`): the write was applied on the partition's primary,
    but fewer replicas than required confirmed it within the timeout, so it may or may not
    survive a failover. Retrying the same request (same reservation id, order id or idempotency
    key) replays it without applying it twice and waits for the replicas again."""

    code = "not_replicated"
    partition: int
    replicas: int
    required: int

    def sentence(self) -> str:
        return (
            f"the change on partition {self.partition} reached {self.replicas} of "
            f"{self.required} required replica(s) in time, so it may be lost in a failover; "
            "retry the same request (it is not applied twice)"
        )


ERRORS_BY_CODE: dict[str, type[EngineError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InvalidQuantity,
        TtlOutOfRange,
        UnknownSku,
        UnknownLocation,
        InsufficientStock,
        PurchaseLimitExceeded,
        TooManyHolds,
        SaleNotStarted,
        SaleEnded,
        ReservationNotFound,
        ReservationExpired,
        InvalidState,
        IncarnationMismatch,
        ExtensionLimit,
        IdempotencyConflict,
        OverFulfil,
        QuantityStale,
        InvariantViolation,
        QuantityTooLarge,
        BackorderNotInStock,
        PlacementGroupFixed,
        PartitionRecovering,
        NotReplicated,
    )
}


def error_from_reply(code: str, details: dict[str, Any]) -> EngineError:
    """The typed error of a script's `{err = code, ...details}` (without `err`)."""
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return EngineError(f"unexpected script error {code!r}: {details!r}")
    if cls is InsufficientStock:
        sold_out = details.pop("so", 0) == 1
        return InsufficientStock(**details, sold_out=sold_out)
    return cls(**details)


def _at(location: str | None) -> str:
    return f" at {location}" if location else ""


def _group(name: str | None) -> str:
    return f"placement group {name}" if name else "no placement group"


def _when(ms: Any) -> str:
    try:
        return ms_to_datetime(int(ms)).isoformat()
    except (TypeError, ValueError):
        return str(ms)


def reply_of(error: EngineError) -> dict[str, Any]:
    """The script reply :func:`error_from_reply` turns back into an equal error: how a cart's
    decision record keeps the refusal that ended it, so a retry is answered the same."""
    reply: dict[str, Any] = {"err": error.code, **error.details}
    if isinstance(error, InsufficientStock) and error.sold_out:
        reply["so"] = 1
    return reply
