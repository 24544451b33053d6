"""Every error the engine raises, one tree.

    FlashsaleError
    ├── ConfigurationError            settings or servers unusable (one line, names the variable)
    └── EngineError                   a refusal from a script; `.code` is the script's error code
        ├── InvalidRequest            invalid_request: malformed ids, reasons, fields
        ├── InvalidQuantity           invalid_quantity (sku, quantity, max)
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
        ├── IdempotencyConflict       idempotency_conflict (reservation_id / key)
        ├── OverFulfil                over_fulfil (sku, location, requested, remaining)
        ├── QuantityStale             quantity_stale (sku, location, expected, current)
        └── InvariantViolation        invariant_violation (sku, location, detail)

Scripts answer `{err = "<code>", ...details}`; :func:`error_from_reply` maps the code to the class.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FlashsaleError(Exception):
    """Root of everything flashsale raises on purpose."""


class ConfigurationError(FlashsaleError):
    """Settings or servers are unusable; the message is one line that names the cause."""


class EngineError(FlashsaleError):
    code: ClassVar[str] = "engine_error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        # The text is built only when someone reads it: a sold-out sale raises refusals by the
        # hundred thousand per second, and formatting them showed as 20% of that path's profile.
        super().__init__()
        self.details = details
        self._message = message

    def __str__(self) -> str:
        return self._message or self._describe()

    def _describe(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.details.items())
        return f"{self.code}: {fields}" if fields else self.code

    def __getattr__(self, name: str) -> Any:
        details = self.__dict__.get("details", {})
        if name in details:
            return details[name]
        raise AttributeError(name)


class InvalidRequest(EngineError):
    code = "invalid_request"


class InvalidQuantity(EngineError):
    code = "invalid_quantity"


class TtlOutOfRange(EngineError):
    code = "ttl_out_of_range"


class UnknownSku(EngineError):
    code = "unknown_sku"


class UnknownLocation(EngineError):
    code = "unknown_location"


class InsufficientStock(EngineError):
    code = "insufficient_stock"


class PurchaseLimitExceeded(EngineError):
    code = "purchase_limit_exceeded"


class TooManyHolds(EngineError):
    code = "too_many_holds"


class SaleNotStarted(EngineError):
    code = "sale_not_started"


class SaleEnded(EngineError):
    code = "sale_ended"


class ReservationNotFound(EngineError):
    code = "reservation_not_found"


class ReservationExpired(EngineError):
    code = "reservation_expired"


class InvalidState(EngineError):
    code = "invalid_state"


class ExtensionLimit(EngineError):
    code = "extension_limit"


class IdempotencyConflict(EngineError):
    code = "idempotency_conflict"


class OverFulfil(EngineError):
    code = "over_fulfil"


class QuantityStale(EngineError):
    code = "quantity_stale"


class InvariantViolation(EngineError):
    code = "invariant_violation"


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
        ExtensionLimit,
        IdempotencyConflict,
        OverFulfil,
        QuantityStale,
        InvariantViolation,
    )
}


def error_from_reply(code: str, details: dict[str, Any]) -> EngineError:
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return EngineError(f"unexpected script error {code!r}", **details)
    return cls(**details)
