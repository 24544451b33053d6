"""Turns script replies (JSON) into engine values or typed errors."""

from __future__ import annotations

from typing import Any

import orjson

from engine.errors import error_from_reply
from engine.types import (
    Allocation,
    Level,
    LocationConfig,
    Reservation,
    ReservationLine,
    ReservationStatus,
    SkuConfig,
    SkuSnapshot,
    ms_to_datetime,
)

STALE_KEYS = "stale_keys"


class StaleKeys(Exception):
    """The cached SKU list of a reservation no longer matches Redis (internal, retried)."""


def decode(raw: bytes | str) -> dict[str, Any]:
    """Parses a script reply; raises the typed error a refusal maps to."""
    reply: dict[str, Any] = orjson.loads(raw)
    code = reply.pop("err", None)
    if code is not None:
        if code == STALE_KEYS:
            raise StaleKeys()
        raise error_from_reply(code, reply)
    return reply


def lines_of(reply: dict[str, Any]) -> tuple[ReservationLine, ...]:
    return tuple(
        ReservationLine(
            sku=sku,
            quantity=int(qty),
            allocations=tuple(
                Allocation(
                    location=a[0], quantity=int(a[1]), backordered=int(a[2]), fulfilled=int(a[3])
                )
                for a in allocs
            ),
        )
        for sku, qty, allocs in orjson.loads(reply["lines"])
    )


def status_of(reply: dict[str, Any], now_ms: int | None = None) -> ReservationStatus:
    status: ReservationStatus = reply["st"]
    if status == "held" and now_ms is not None and int(reply["exp"]) <= now_ms:
        return "expired"
    return status


def reservation_of(
    reservation_id: str, parts: list[dict[str, Any]], now_ms: int | None = None
) -> Reservation:
    """One Reservation from its parts (one per partition it spans)."""
    first = parts[0]
    statuses = [status_of(p, now_ms) for p in parts]
    return Reservation(
        id=reservation_id,
        customer_id=first["cust"],
        status=statuses[0] if len(set(statuses)) == 1 else _merged_status(statuses),
        expires_at=ms_to_datetime(min(int(p["exp"]) for p in parts)),
        lines=tuple(line for p in parts for line in lines_of(p)),
        order_id=first.get("ord") or None,
        extensions=max(int(p.get("ext", 0)) for p in parts),
        replayed=all(p.get("replayed") == 1 for p in parts),
        incarnation=first.get("gen", ""),
    )


def _merged_status(statuses: list[ReservationStatus]) -> ReservationStatus:
    # Parts disagree only mid-way through a cross-partition operation; report the least advanced.
    for status in ("expired", "released", "held", "committed", "fulfilled"):
        if status in statuses:
            return status
    return statuses[0]


def snapshot_of(sku: str, reply: dict[str, Any]) -> SkuSnapshot:
    cfg = orjson.loads(reply["cfg"])
    q = reply["q"]
    levels = tuple(
        Level(
            location=loc,
            on_hand=int(q[loc]["oh"]),
            reserved=int(q[loc]["rs"]),
            committed=int(q[loc]["cm"]),
            safety_stock=int(q[loc]["ss"]),
            backorder_limit=int(q[loc]["bl"]),
            incoming=int(q[loc]["inc"]),
        )
        for loc in cfg["locations"]
    )
    config = SkuConfig(
        locations=tuple(
            LocationConfig(
                location=lvl.location,
                on_hand=lvl.on_hand,
                safety_stock=lvl.safety_stock,
                backorder_limit=lvl.backorder_limit,
                incoming=lvl.incoming,
            )
            for lvl in levels
        ),
        purchase_limit=int(cfg["purchase_limit"]),
        max_active_holds_per_customer=int(cfg["max_active_holds_per_customer"]),
        max_extensions=int(cfg["max_extensions"]),
        allocation_strategy=cfg["allocation_strategy"],
        low_stock_threshold=int(cfg["low_stock_threshold"]),
        backorder_lead_days=int(cfg["backorder_lead_days"]),
        sale_starts_at=_maybe_time(cfg.get("sale_starts_at")),
        sale_ends_at=_maybe_time(cfg.get("sale_ends_at")),
        placement_group=cfg.get("placement_group") or None,
    )
    return SkuSnapshot(sku=sku, config=config, locations=levels)


def level_of(location: str, reply: dict[str, Any]) -> Level:
    return Level(
        location=location,
        on_hand=int(reply["oh"]),
        reserved=int(reply["rs"]),
        committed=int(reply["cm"]),
        safety_stock=int(reply["ss"]),
        backorder_limit=int(reply["bl"]),
        incoming=int(reply["inc"]),
    )


def _maybe_time(value: Any) -> Any:
    return None if value is None else ms_to_datetime(int(value))
