"""Stream entries → ledger rows. An entry that cannot become a row is poison (`PoisonEvent`).

The field set is engine/events.py's; this module only checks and converts it. A check failing here
fails the same way on every redelivery, so the worker parks such an entry instead of retrying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from engine import events

LINE_TYPES = frozenset(
    (
        events.RESERVED,
        events.EXTENDED,
        events.COMMITTED,
        events.FULFILLED,
        events.RELEASED,
        events.EXPIRED,
        events.RESTOCKED,
        events.ADJUSTED,
        events.ON_HAND_SET,
    )
)
RESERVATION_TYPES = frozenset(
    (
        events.RESERVED,
        events.EXTENDED,
        events.COMMITTED,
        events.FULFILLED,
        events.RELEASED,
        events.EXPIRED,
    )
)
_INT_FIELDS = (
    "d_on_hand",
    "d_reserved",
    "d_committed",
    "on_hand",
    "reserved",
    "committed",
    "available",
    "backordered",
    "ts",
)
_TEXT_FIELDS = ("reservation_id", "order_id", "customer_id", "reason", "reference")
_BIGINT = 2**63
_EVENT_TYPES = frozenset(events.EVENT_TYPES)


class PoisonEvent(Exception):
    """This entry can never be written; the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as read: `fields` alternates names and values, as Redis sends them.
    Empty `fields`: it was deleted from the stream before syncing."""

    partition: int
    stream_id: str
    fields: list[bytes]

    def as_dict(self) -> dict[bytes, bytes]:
        return dict(zip(self.fields[::2], self.fields[1::2], strict=True))

    def printable(self) -> dict[str, str]:
        return {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in self.as_dict().items()
        }


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class Row:
    partition: int
    stream_id: str
    pos: tuple[int, int]  # the stream id as numbers: its order within the partition
    type: str
    sku: str
    location: str
    d_on_hand: int
    d_reserved: int
    d_committed: int
    on_hand: int
    reserved: int
    committed: int
    available: int
    reservation_id: str | None
    order_id: str | None
    customer_id: str | None
    reason: str | None
    reference: str | None
    backordered: int
    expires_ms: int | None
    data: Any  # decoded JSON, or None
    data_json: str | None  # the same, as the entry carried it
    ts: int

    @property
    def key(self) -> tuple[int, str]:
        return (self.partition, self.stream_id)


_FIELD_KEYS = [name.encode() for name in events.FIELDS]
_FIELD_INDEX = {name: n for n, name in enumerate(events.FIELDS)}
_INT_AT = tuple(_FIELD_INDEX[name] for name in _INT_FIELDS)
_RID, _OID, _CID, _REASON, _REF = (_FIELD_INDEX[name] for name in _TEXT_FIELDS)
_EXPIRES, _DATA = _FIELD_INDEX["expires_at"], _FIELD_INDEX["data"]


def parse(entry: Entry) -> Row:
    if not entry.fields:
        raise PoisonEvent("the entry was deleted from the stream before it was synced")
    raw: list[bytes | None]
    if entry.fields[::2] == _FIELD_KEYS:  # as every script writes them: no dict needed
        raw = list(entry.fields[1::2])
    else:
        named = entry.as_dict()
        raw = [named.get(key) for key in _FIELD_KEYS]
    if None in raw:
        missing = [name for name, value in zip(events.FIELDS, raw, strict=True) if value is None]
        raise PoisonEvent(f"missing fields: {', '.join(missing)}")
    try:
        f = [value.decode() for value in raw]  # type: ignore[union-attr]
    except UnicodeDecodeError as exc:
        raise PoisonEvent(f"not UTF-8: {exc}") from None
    kind, sku, location = f[0], f[1], f[2]
    if kind not in _EVENT_TYPES:
        raise PoisonEvent(f"unknown event type {kind!r}")
    if not sku:
        raise PoisonEvent("empty sku")
    if kind in LINE_TYPES and not location:
        raise PoisonEvent(f"a {kind} event needs a location")
    try:
        n = [int(f[i]) for i in _INT_AT]
    except ValueError:
        n = [_int(name, f[i]) for name, i in zip(_INT_FIELDS, _INT_AT, strict=True)]
    if min(n) <= -_BIGINT or max(n) >= _BIGINT:
        n = [_int(name, f[i]) for name, i in zip(_INT_FIELDS, _INT_AT, strict=True)]
    rid, oid, cid = f[_RID] or None, f[_OID] or None, f[_CID] or None
    reason, reference = f[_REASON] or None, f[_REF] or None
    if kind in RESERVATION_TYPES and not (rid and cid):
        raise PoisonEvent(f"a {kind} event needs reservation_id and customer_id")
    data_json = f[_DATA] or None
    data = None if data_json is None else _json(data_json)
    if kind == events.SKU_CONFIGURED and not _is_config(data):
        raise PoisonEvent("sku_configured data is not a configuration with locations")
    expires = _int("expires_at", f[_EXPIRES]) if f[_EXPIRES] else None
    if kind in (events.RESERVED, events.EXTENDED) and expires is None:
        raise PoisonEvent(f"a {kind} event needs expires_at")
    ms, _, seq = entry.stream_id.partition("-")
    try:
        pos = (int(ms), int(seq or 0))
    except ValueError:
        raise PoisonEvent(f"bad stream id {entry.stream_id!r}") from None
    d_on_hand, d_reserved, d_committed, on_hand, reserved, committed, available, bo, ts = n
    return Row(
        entry.partition,
        entry.stream_id,
        pos,
        kind,
        sku,
        location,
        d_on_hand,
        d_reserved,
        d_committed,
        on_hand,
        reserved,
        committed,
        available,
        rid,
        oid,
        cid,
        reason,
        reference,
        bo,
        expires,
        data,
        data_json,
        ts,
    )


def _text(raw: bytes) -> str:
    return raw.decode(errors="backslashreplace").replace("\x00", "\\x00")


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise PoisonEvent(f"{name} is not an integer: {raw[:40]!r}") from None
    if not -_BIGINT < value < _BIGINT:
        raise PoisonEvent(f"{name} out of range: {value}")
    return value


def _json(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PoisonEvent(f"data is not JSON: {exc}") from None


def _is_config(data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("locations"), list):
        return False
    return all(isinstance(loc, dict) and loc.get("location") for loc in data["locations"])
