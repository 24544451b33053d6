"""Checks the engine makes before a request reaches Redis (the scripts check again)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.config import Settings
from engine.errors import InvalidQuantity, InvalidRequest, TtlOutOfRange
from engine.types import ID_PATTERN, REASONS, CartLine, FulfilLine

# The ceiling of every stock total (on_hand, safety_stock, backorder_limit, incoming, reserved,
# committed) at a location; the scripts refuse a change that would pass it (quantity_too_large).
# Lua numbers are doubles and Redis's cjson writes 14 significant digits: at 10^12 every total,
# and every sum of them a script or a reply forms, is an exact integer. lua/includes/numbers.lua
# declares the same value.
QUANTITY_LIMIT = 10**12


def check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(
            f"{kind} must be 1-64 characters of A-Z a-z 0-9 _ . : @ + - "
            f"(starting with a letter or digit), got {value!r}",
            field=kind,
        )
    return value


def check_quantity(sku: str, quantity: object, maximum: int) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidQuantity(sku=sku, quantity=quantity, max=maximum)
    if quantity <= 0 or quantity > maximum:
        raise InvalidQuantity(sku=sku, quantity=quantity, max=maximum)
    return quantity


def check_ttl(ttl_seconds: object, settings: Settings) -> int:
    low, high = settings.hold_ttl_min_seconds, settings.hold_ttl_max_seconds
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise TtlOutOfRange(ttl_seconds=ttl_seconds, min=low, max=high)
    if not low <= ttl_seconds <= high:
        raise TtlOutOfRange(ttl_seconds=ttl_seconds, min=low, max=high)
    return ttl_seconds


def check_cart(lines: Sequence[CartLine], settings: Settings) -> None:
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
        check_quantity(line.sku, line.quantity, QUANTITY_LIMIT)
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
