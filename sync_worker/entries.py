"""Stream entries → ledger rows. An entry that cannot become a row is poison (`PoisonEvent`).

The field set is engine/events.py's; this module only checks and converts it. A check failing here
fails the same way on every redelivery, so the worker parks such an entry instead of retrying.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from operator import itemgetter
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
_EXPIRING = frozenset((events.RESERVED, events.EXTENDED))


class PoisonEvent(Exception):
    """This entry can never be written; the message says why."""


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class Entry:
    """One stream entry as read: `fields` alternates names and values, as Redis sends them.
    Empty `fields`: it was deleted from the stream before syncing."""

    partition: int
    stream_id: str
    fields: list[bytes]
    run: str = ""  # the run_id of the Redis server it was read from ("": not known)

    def as_dict(self) -> dict[bytes, bytes]:
        return dict(zip(self.fields[::2], self.fields[1::2], strict=True))

    def printable(self) -> dict[str, str]:
        return {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in self.as_dict().items()
        }


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class Row:
    """What the writer needs of an entry: its ledger row ready for COPY, and the fields that
    decide which levels, names, configurations and reservations it touches.

    A reservation's rebuild takes a fresh row as it is (reservations.ResEvent's fields, with
    what the ledger stores: empty text as None, expires_at in ms): it never reads it back."""

    partition: int
    stream_id: str
    pos: tuple[int, int]  # the stream id as numbers: its order within the partition
    type: str
    sku: str
    location: str
    on_hand: int
    reserved: int
    committed: int
    reservation_id: str | None
    data: Any  # decoded JSON, or None
    ts: int
    copy_line: bytes  # the ledger row in COPY text format (see writer.STAGING), newline included
    d_reserved: int
    d_committed: int
    order_id: str | None
    customer_id: str | None
    reference: str | None
    backordered: int
    expires_ms: int | None

    @property
    def key(self) -> tuple[int, str]:
        return (self.partition, self.stream_id)


_FIELD_KEYS = [name.encode() for name in events.FIELDS]
_FIELD_INDEX = {name: n for n, name in enumerate(events.FIELDS)}
_INT_AT = tuple(_FIELD_INDEX[name] for name in _INT_FIELDS)
_INTS = itemgetter(*_INT_AT)
_INT64 = struct.Struct(f"{len(_INT_FIELDS)}q")  # packing refuses what a bigint cannot hold
_RID, _OID, _CID, _REF = (
    _FIELD_INDEX[name] for name in ("reservation_id", "order_id", "customer_id", "reference")
)
_EXPIRES, _DATA = _FIELD_INDEX["expires_at"], _FIELD_INDEX["data"]
# Tab, newline, carriage return and backslash have a meaning in COPY's text format.
_COPY_SPECIAL = b"\t\n\r\\"


def parse(entry: Entry) -> Row:
    if not entry.fields:
        raise PoisonEvent("the entry was deleted from the stream before it was synced")
    values: list[bytes]
    if entry.fields[::2] == _FIELD_KEYS:  # as every script writes them: no dict needed
        values = entry.fields[1::2]
    else:
        named = entry.as_dict()
        raw = [named.get(key) for key in _FIELD_KEYS]
        if None in raw:
            missing = [n for n, value in zip(events.FIELDS, raw, strict=True) if value is None]
            raise PoisonEvent(f"missing fields: {', '.join(missing)}")
        values = raw  # type: ignore[assignment]  # no None, checked above
    # One decode checks every field is UTF-8; splitting it back gives the text fields, unless a
    # value holds a character COPY's text format gives a meaning to (then each field is decoded
    # and escaped on its own).
    joined = b"\t".join(values)
    try:
        f = joined.decode().split("\t")
    except UnicodeDecodeError as exc:
        raise PoisonEvent(f"not UTF-8: {exc}") from None
    plain = len(joined.translate(None, _COPY_SPECIAL)) == len(joined) - len(values) + 1
    if not plain:
        f = [value.decode() for value in values]
    kind, sku, location = f[0], f[1], f[2]
    if kind not in _EVENT_TYPES:
        raise PoisonEvent(f"unknown event type {kind!r}")
    if not sku:
        raise PoisonEvent("empty sku")
    if kind in LINE_TYPES and not location:
        raise PoisonEvent(f"a {kind} event needs a location")
    try:
        n = tuple(map(int, _INTS(values)))
        _INT64.pack(*n)
    except (ValueError, struct.error):
        n = tuple([_int(name, f[i]) for name, i in zip(_INT_FIELDS, _INT_AT, strict=True)])
    # in _INT_FIELDS order (d_on_hand and available are only copied, never read)
    _, d_reserved, d_committed, on_hand, reserved, committed, _, backordered, ts = n
    rid = f[_RID] or None
    if kind in RESERVATION_TYPES and not (rid and f[_CID]):
        raise PoisonEvent(f"a {kind} event needs reservation_id and customer_id")
    data = _json(f[_DATA]) if f[_DATA] else None
    if kind == events.SKU_CONFIGURED and not _is_config(data):
        raise PoisonEvent("sku_configured data is not a configuration with locations")
    expires_ms = _int("expires_at", f[_EXPIRES]) if f[_EXPIRES] else None
    if expires_ms is None and kind in _EXPIRING:
        raise PoisonEvent(f"a {kind} event needs expires_at")
    ms, _, seq = entry.stream_id.partition("-")
    try:
        pos = (int(ms), int(seq or 0))
    except ValueError:
        raise PoisonEvent(f"bad stream id {entry.stream_id!r}") from None
    return Row(
        entry.partition,
        entry.stream_id,
        pos,
        kind,
        sku,
        location,
        on_hand,
        reserved,
        committed,
        rid,
        data,
        ts,
        b"%d\t%s\t%s\n"
        % (
            entry.partition,
            entry.stream_id.encode(),
            joined if plain else b"\t".join([_escape(v) for v in values]),
        ),
        d_reserved,
        d_committed,
        f[_OID] or None,
        f[_CID] or None,
        f[_REF] or None,
        backordered,
        expires_ms,
    )


def _escape(value: bytes) -> bytes:
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
    )


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
