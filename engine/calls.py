"""The KEYS and ARGV of every Lua script, one builder per script, in the order its header lists.

A script's header is the contract; its builder here is the one place the Python side spells it
out, so a change to one shows next to the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from engine.config import EngineSettings
from engine.keys import Partition
from engine.types import CartLine, FulfilLine

Call = tuple[list[Any], list[Any]]  # KEYS, ARGV


@dataclass(frozen=True, slots=True)
class ReservationPart:
    """The SKUs a reservation holds in one partition (a cart spanning partitions has several)."""

    number: int  # the partition
    skus: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    reservation_id: str
    customer_id: str
    ttl_ms: int
    fingerprint: str
    lines: Sequence[CartLine]
    incarnation: str = ""  # stored if the request creates the reservation (token binding)


@dataclass(frozen=True, slots=True)
class OnHandChange:
    """One restock, adjustment or correction of on_hand at a location."""

    sku: str
    location: str
    mode: Literal["delta", "set"]  # quantity is a delta, or the new on_hand
    quantity: int
    event: str  # the event type it appends: events.RESTOCKED, ADJUSTED or ON_HAND_SET
    reason: str
    reference: str = ""
    change_from: int | None = None  # mode "set": refused unless on_hand is this now
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class CartStart:
    """What a cart spanning partitions records before its first part is reserved."""

    reservation_id: str
    customer_id: str
    fingerprint: str
    incarnation: str
    parts: tuple[ReservationPart, ...]
    lines: Sequence[CartLine]
    ttl_ms: int


def configure_sku_call(
    part: Partition,
    sku: str,
    config: dict[str, Any],
    reason: str,
    reference: str,
    settings: EngineSettings,
    clock_offset_ms: int,
) -> Call:
    keys = [part.events, part.skus, *part.sku_keys(sku)]
    args = [clock_offset_ms, sku, orjson.dumps(config), settings.reclaim_batch, reason, reference]
    return keys, args


def reserve_call(
    part: Partition,
    requests: Sequence[ReserveRequest],
    settings: EngineSettings,
    clock_offset_ms: int,
) -> Call:
    index: dict[str, int] = {}
    for request in requests:
        for line in request.lines:
            index.setdefault(line.sku, len(index) + 1)
    keys: list[Any] = [part.events]
    for sku in index:
        keys.extend(part.sku_keys(sku))
    keys.extend(part.reservation(r.reservation_id) for r in requests)
    args: list[Any] = [
        clock_offset_ms,
        settings.hold_ttl_min_seconds * 1000,
        settings.hold_ttl_max_seconds * 1000,
        settings.retention_seconds * 1000,
        settings.reclaim_batch,
        settings.max_quantity_per_line,
        len(index),
        *index,
    ]
    for r in requests:
        args += [
            r.reservation_id,
            r.customer_id,
            r.ttl_ms,
            r.fingerprint,
            orjson.dumps([[index[ln.sku], ln.quantity, ln.location or ""] for ln in r.lines]),
            r.incarnation,
        ]
    return keys, args


def _reservation_call(
    part: ReservationPart,
    reservation_id: str,
    settings: EngineSettings,
    clock_offset_ms: int,
    extra: Sequence[Any],
    incarnation: str | None = None,
) -> Call:
    """The layout commit, extend, fulfil and release share; `extra` is ARGV[7] onwards.
    `incarnation`: the one the caller's token names (None: any)."""
    partition = Partition(part.number)
    keys = [partition.events, partition.reservation(reservation_id)]
    for sku in part.skus:
        keys.extend(partition.sku_keys(sku))
    args = [
        clock_offset_ms,
        reservation_id,
        "\n".join(part.skus),
        settings.retention_seconds * 1000,
        settings.reclaim_batch,
        incarnation or "",
        *extra,
    ]
    return keys, args


def extend_call(
    part: ReservationPart,
    reservation_id: str,
    ttl_seconds: int,
    settings: EngineSettings,
    clock_offset_ms: int,
    incarnation: str | None = None,
) -> Call:
    bounds = [settings.hold_ttl_min_seconds * 1000, settings.hold_ttl_max_seconds * 1000]
    extra = [ttl_seconds * 1000, *bounds]
    return _reservation_call(part, reservation_id, settings, clock_offset_ms, extra, incarnation)


def commit_call(
    part: ReservationPart,
    reservation_id: str,
    order_id: str,
    settings: EngineSettings,
    clock_offset_ms: int,
    incarnation: str | None = None,
) -> Call:
    extra = [order_id]
    return _reservation_call(part, reservation_id, settings, clock_offset_ms, extra, incarnation)


def fulfil_call(
    part: ReservationPart,
    reservation_id: str,
    lines: Sequence[FulfilLine] | None,
    fulfilment_id: str | None,
    settings: EngineSettings,
    clock_offset_ms: int,
    check_only: bool = False,
    incarnation: str | None = None,
) -> Call:
    """`lines` None ships all that is open; otherwise only the lines of this part's SKUs."""
    wanted = [[ln.sku, ln.quantity, ln.location or ""] for ln in lines or ()]
    extra = ["" if lines is None else orjson.dumps(wanted), fulfilment_id or ""]
    extra.append("1" if check_only else "")
    return _reservation_call(part, reservation_id, settings, clock_offset_ms, extra, incarnation)


def release_call(
    part: ReservationPart,
    reservation_id: str,
    settings: EngineSettings,
    clock_offset_ms: int,
    forget: bool = False,
    incarnation: str | None = None,
) -> Call:
    extra = ["1" if forget else ""]
    return _reservation_call(part, reservation_id, settings, clock_offset_ms, extra, incarnation)


def expire_call(part: Partition, sku: str, settings: EngineSettings, clock_offset_ms: int) -> Call:
    return [part.events, *part.sku_keys(sku)], [clock_offset_ms, sku, settings.reclaim_batch]


def change_on_hand_call(
    part: Partition,
    change: OnHandChange,
    fingerprint: str,
    settings: EngineSettings,
    clock_offset_ms: int,
) -> Call:
    """`fingerprint` "" when the change has no idempotency key (then KEYS[5] is unused)."""
    keys = [part.events, *part.sku_keys(change.sku), part.operation(change.idempotency_key or "")]
    args = [
        clock_offset_ms,
        change.sku,
        change.location,
        change.mode,
        change.quantity,
        "" if change.change_from is None else change.change_from,
        change.reason,
        change.reference,
        change.event,
        fingerprint,
        settings.retention_seconds * 1000,
        settings.reclaim_batch,
    ]
    return keys, args


def snapshot_call(
    part: Partition, sku: str, settings: EngineSettings, clock_offset_ms: int
) -> Call:
    return [part.events, *part.sku_keys(sku)], [clock_offset_ms, sku, settings.reclaim_batch]


def get_reservation_call(part: Partition, reservation_id: str, clock_offset_ms: int) -> Call:
    keys = [part.reservation(reservation_id), part.cart(reservation_id)]
    return keys, [clock_offset_ms, reservation_id]


def restore_sku_call(
    part: Partition,
    sku: str,
    mode: Literal["replace", "append"],
    config_json: str,
    quantities_json: str,
    holds_json: str,
    customers_json: str,
    reservation_ids: Sequence[str],
    reservations_json: str,
) -> Call:
    """Config and quantities are "" in mode append; `reservations_json` in reservation_ids order."""
    keys = [part.skus, *part.sku_keys(sku), *(part.reservation(rid) for rid in reservation_ids)]
    args = [sku, mode, config_json, quantities_json, holds_json, customers_json, reservations_json]
    return keys, args


def cart_begin_call(
    home: Partition, start: CartStart, settings: EngineSettings, clock_offset_ms: int
) -> Call:
    parts = [[p.number, "\n".join(p.skus)] for p in start.parts]
    lines = [[ln.sku, ln.quantity, ln.location or ""] for ln in start.lines]
    args = [
        "begin",
        clock_offset_ms,
        start.reservation_id,
        start.fingerprint,
        start.customer_id,
        start.incarnation,
        orjson.dumps(parts),
        orjson.dumps(lines),
        start.ttl_ms,
        _recovery_ms(settings),
        settings.retention_seconds * 1000,
    ]
    return [home.cart(start.reservation_id), home.carts], args


def cart_decide_call(
    home: Partition,
    reservation_id: str,
    leaving: Sequence[str],
    state: str,
    *,
    transient: bool,
    expiry_ms: int,
    fields: dict[str, str],
    settings: EngineSettings,
    clock_offset_ms: int,
    incarnation: str | None = None,
) -> Call:
    """`expiry_ms`: the record's new life from now, -1 to persist it, 0 to leave it;
    `incarnation`: the one the caller's token names (None: any)."""
    recovery = _recovery_ms(settings) if transient else 0
    args: list[Any] = ["decide", clock_offset_ms, reservation_id, ",".join(leaving), state]
    args += [recovery, expiry_ms, incarnation or ""]
    for name, value in fields.items():
        args += [name, value]
    return [home.cart(reservation_id), home.carts], args


def cart_get_call(home: Partition, reservation_id: str, clock_offset_ms: int) -> Call:
    return [home.cart(reservation_id), home.carts], ["get", clock_offset_ms, reservation_id]


def cart_due_call(home: Partition, limit: int, clock_offset_ms: int) -> Call:
    return [home.cart(""), home.carts], ["due", clock_offset_ms, limit]


def _recovery_ms(settings: EngineSettings) -> int:
    return int(settings.cart_recovery_seconds * 1000)
