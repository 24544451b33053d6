"""A reservation part's current state, rebuilt from its ledger rows (pure, no I/O).

Workers may commit one partition's batches out of stream order, so the writer never patches a
reservation row event by event: it locks the reservation and rebuilds it from every ledger row it
has, in stream order. The answer is the same whatever order the rows arrived in.

Reservation ids may be reused once a finished reservation has left Redis (retention): the rows
that count start at the latest `reserved` script call (its events share one `ts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

from engine import events


class LedgerRow(Protocol):
    """What a rebuild reads of a ledger row: a ResEvent read back, or a batch's own
    entries.Row (the same fields, as the ledger stores them)."""

    pos: tuple[int, int]
    type: str
    sku: str
    location: str
    d_reserved: int
    d_committed: int
    order_id: str | None
    customer_id: str | None
    reference: str | None
    backordered: int
    data: Any  # read only on `reserved` rows
    ts: int
    expires_ms: int | None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class ResEvent:
    pos: tuple[int, int]
    type: str
    sku: str
    location: str
    d_reserved: int
    d_committed: int
    order_id: str | None
    customer_id: str | None
    reference: str | None
    backordered: int
    data: Any
    ts: int
    expires_ms: int | None


@dataclass(slots=True)
class Alloc:
    location: str
    quantity: int
    backordered: int = 0
    fulfilled: int = 0


@dataclass(slots=True)
class Line:
    sku: str
    allocs: list[Alloc] = field(default_factory=list)
    hold_expired: bool = False

    @property
    def quantity(self) -> int:
        return sum(a.quantity for a in self.allocs)


@dataclass(slots=True)
class State:
    customer_id: str
    status: str
    expires_ms: int
    created_ms: int
    lines: list[Line]
    order_id: str | None = None
    extensions: int = 0
    finished_ms: int | None = None
    fingerprint: str | None = None
    fulfilments: dict[str, list[list[Any]]] = field(default_factory=dict)
    ttl_ms: int = 0  # as first requested: the fingerprint covers it


_BY_POS = attrgetter("pos")
_RESERVED, _EXTENDED, _COMMITTED = events.RESERVED, events.EXTENDED, events.COMMITTED
_FULFILLED, _RELEASED, _EXPIRED = events.FULFILLED, events.RELEASED, events.EXPIRED


def rebuild(unordered: Iterable[LedgerRow]) -> State | None:
    """None while the `reserved` rows have not been synced yet (another worker holds them)."""
    rows = sorted(unordered, key=_BY_POS)
    reserved = [i for i, r in enumerate(rows) if r.type == _RESERVED]
    if not reserved:
        return None
    latest_ts = rows[reserved[-1]].ts
    start = next(i for i in reserved if rows[i].ts == latest_ts)
    first = rows[start]
    state = State(
        customer_id=first.customer_id or "",
        status="held",
        expires_ms=first.expires_ms or 0,
        created_ms=first.ts,
        lines=[],
        ttl_ms=(first.expires_ms or first.ts) - first.ts,
    )
    extended_at: set[int] = set()
    for row in rows[start:] if start else rows:
        kind = row.type
        if kind == _RESERVED:
            if row.ts == latest_ts:
                _add_allocation(state, row)
        elif kind == _EXTENDED:
            state.expires_ms = row.expires_ms or state.expires_ms
            extended_at.add(row.ts)  # one event per location line, one extension per call
        elif kind == _COMMITTED:
            state.status, state.order_id = "committed", row.order_id
        elif kind == _FULFILLED:
            _fulfil(state, row)
        elif kind == _RELEASED:
            state.status, state.finished_ms = "released", row.ts
        elif kind == _EXPIRED and state.status == "held":
            _expire(state, row)
    state.extensions = len(extended_at)
    return state


def _add_allocation(state: State, row: LedgerRow) -> None:
    data = row.data
    index = None
    if isinstance(data, dict):
        if isinstance(data.get("fp"), str):
            state.fingerprint = data["fp"]
        index = data.get("line")
    alloc = Alloc(row.location, row.d_reserved, row.backordered)
    if isinstance(index, int) and index >= 1:
        while len(state.lines) < index:
            state.lines.append(Line(row.sku))
        state.lines[index - 1].allocs.append(alloc)
        return
    # Without a line index: the reserve script emits each cart line's allocations together, one
    # per location, so a new line starts at a new SKU or at a location the line already has.
    last = state.lines[-1] if state.lines else None
    if last is None or last.sku != row.sku or any(a.location == row.location for a in last.allocs):
        state.lines.append(Line(row.sku))
    state.lines[-1].allocs.append(alloc)


def _fulfil(state: State, row: LedgerRow) -> None:
    # The fulfil script ships the earliest open allocation of a SKU-location first; so do we.
    remaining = -row.d_committed
    for line in state.lines:
        if line.sku != row.sku:
            continue
        for alloc in line.allocs:
            if alloc.location == row.location and remaining > 0:
                take = min(remaining, alloc.quantity - alloc.fulfilled)
                alloc.fulfilled += take
                remaining -= take
    if row.reference:
        state.fulfilments.setdefault(row.reference, []).append(
            [row.sku, -row.d_committed, row.location]
        )
    if all(a.fulfilled >= a.quantity for line in state.lines for a in line.allocs):
        state.status, state.finished_ms = "fulfilled", row.ts


def _expire(state: State, row: LedgerRow) -> None:
    for line in state.lines:
        if line.sku == row.sku:
            line.hold_expired = True
    if all(line.hold_expired for line in state.lines):
        state.status, state.finished_ms = "expired", row.ts
