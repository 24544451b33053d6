"""Checks the engine makes before a request reaches Redis (the scripts check again)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from engine.config import EngineSettings
from engine.errors import InvalidQuantity, InvalidRequest, TtlOutOfRange
from engine.types import ID_PATTERN, REASONS, CartLine, FulfilLine

# The times a SKU may carry. Redis' JSON encoder keeps 14 significant digits, so milliseconds
# since the epoch are stored exactly only below 1e14 (year 5138); Python's datetime ends at 9999.
# A sale window needs neither end: these bounds leave both far away and are easy to state.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
TIME_RANGE = "from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59.999Z"


def time_in_range(value: datetime) -> bool:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return EARLIEST_TIME <= value <= LATEST_TIME


def check_time(name: str, value: datetime | None) -> None:
    if value is not None and not time_in_range(value):
        raise InvalidRequest(f"{name} must be {TIME_RANGE}, got {value.isoformat()}", field=name)


# The ceiling of every stock total (on_hand, safety_stock, backorder_limit, incoming, reserved,
# committed) at a location; the scripts refuse a change that would pass it (quantity_too_large).
# Lua numbers are doubles and Redis's cjson writes 14 significant digits: at 10^12 every total,
# and every sum of them a script or a reply forms, is an exact integer. lua/includes/numbers.lua
# declares the same value.
QUANTITY_LIMIT = 10**12

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
