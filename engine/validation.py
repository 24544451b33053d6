"""Checks the engine makes before a request reaches Redis (the scripts check again)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.config import EngineSettings
from engine.errors import InvalidQuantity, InvalidRequest, TtlOutOfRange
from engine.types import ID_PATTERN, REASONS, CartLine, FulfilLine

# ID_PATTERN in words, for people: the API says this instead of the regex.
ID_RULE = "1 to 64 letters, digits or _.:@+-, starting with a letter or digit"


def check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{kind} must be {ID_RULE}, got {value!r}", field=kind)
    return value


def check_quantity(sku: str, quantity: object, maximum: int) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidQuantity(sku=sku, quantity=quantity, max=maximum)
    if quantity <= 0 or quantity > maximum:
        raise InvalidQuantity(sku=sku, quantity=quantity, max=maximum)
    return quantity


def check_ttl(ttl_seconds: object, settings: EngineSettings) -> int:
    low, high = settings.hold_ttl_min_seconds, settings.hold_ttl_max_seconds
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise TtlOutOfRange(ttl_seconds=ttl_seconds, min=low, max=high)
    if not low <= ttl_seconds <= high:
        raise TtlOutOfRange(ttl_seconds=ttl_seconds, min=low, max=high)
    return ttl_seconds


def check_cart(lines: Sequence[CartLine], settings: EngineSettings) -> None:
    if not 1 <= len(lines) <= settings.max_lines_per_cart:
        raise InvalidRequest(
            f"a cart holds 1 to {settings.max_lines_per_cart} lines, got {len(lines)}",
            field="lines",
        )
    for line in lines:
        check_id("sku", line.sku)
        check_quantity(line.sku, line.quantity, settings.max_quantity_per_line)
        if line.location is not None:
            check_id("location", line.location)


def check_fulfil_lines(lines: Sequence[FulfilLine]) -> None:
    if not lines:
        raise InvalidRequest("fulfil lines, when given, must not be empty", field="lines")
    for line in lines:
        check_id("sku", line.sku)
        check_quantity(line.sku, line.quantity, 10**12)
        if line.location is not None:
            check_id("location", line.location)


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise InvalidRequest(f"reason must be one of {', '.join(REASONS)}", field="reason")
    return reason


def check_reference(reference: str | None) -> str:
    if reference is None:
        return ""
    if len(reference) > 512 or any(c.isspace() for c in reference):
        raise InvalidRequest("reference must be a URI of at most 512 characters", field="reference")
    return reference
