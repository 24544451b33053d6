"""Rebuilds Redis from a durable image after Redis lost its data (`flashsale restore`).

The caller (sync_worker, reading Postgres) hands over what it knows in engine terms: each SKU's
configuration and on_hand, and every reservation part still worth having (held, committed, or
finished within the retention window). This module turns that into the Redis layout the scripts
use (hold members, customer counters, reservation hashes) and writes it with `restore_sku.lua`.

`reserved` and `committed` are derived from the holds and orders written, never copied, so the
invariant "reserved = sum of active holds" holds after a restore even if the image disagrees; the
caller gets each disagreement back as a warning. Holds past their deadline are restored too: the
next script touching the SKU (or the sweeper) reclaims them and emits their `expired` events, so
Postgres learns about them as it would have. Each stream gets its consumer group and a last id no
lower than the newest event already in Postgres, so new events sort after every old one. Each SKU
goes back to the partition its placement group names (its config carries the group), and the
placement directory (engine.placement) is written again, so the engines find it there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from engine.calls import restore_sku_call
from engine.config import EngineSettings
from engine.connection import RedisClient
from engine.engine import request_fingerprint as _fingerprint
from engine.errors import FlashsaleError
from engine.fencing import adopt
from engine.keys import KeySchema, Partition, placement
from engine.replies import decode
from engine.scripts import Scripts
from engine.streams import CONSUMER_GROUP, parse_stream_id
from engine.types import ReservationLine, ReservationStatus

CHUNK = 500  # holds or reservations per script call: each call stays far below a millisecond


class RestoreError(FlashsaleError):
    """The image cannot be restored as given; the message says why."""


class RedisNotEmpty(RestoreError):
    """Redis still holds flashsale data; restoring over it needs force."""


@dataclass(frozen=True, slots=True)
class SkuImage:
    sku: str
    config: Mapping[str, Any]  # the payload configure_sku sends (what `sku_configured` carries)
    on_hand: Mapping[str, int]  # per location
    reserved: Mapping[str, int] = field(default_factory=dict)  # as the image saw them: checked
    committed: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReservationImage:
    """One reservation's part in one partition."""

    id: str
    customer_id: str
    status: ReservationStatus
    expires_at_ms: int
    created_at_ms: int
    lines: tuple[ReservationLine, ...]
    order_id: str | None = None
    extensions: int = 0
    fingerprint: str = ""
    fulfilments: Mapping[str, str] = field(default_factory=dict)  # fulfilment id -> request
    finished_at_ms: int | None = None
    expired_skus: frozenset[str] = frozenset()  # SKUs whose hold expiry already reclaimed
    incarnation: str = ""  # the nonce its tokens are bound to ("" for one made before them)

    @property
    def skus(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(line.sku for line in self.lines))


@dataclass(frozen=True, slots=True)
class OperationImage:
    """The idempotency record of a stock operation (restock, adjust) made with a key."""

    key: str
    sku: str
    fingerprint: str
    answer: Mapping[str, Any]  # the first answer, as change_on_hand.lua stored it
    recorded_at_ms: int


@dataclass
class RestoreReport:
    skus: int = 0
    holds: int = 0
    reservations: int = 0
    warnings: list[str] = field(default_factory=list)


def request_fingerprint(
    customer_id: str, ttl_seconds: int, lines: Sequence[ReservationLine]
) -> str:
    """The fingerprint reserve() stores, for a cart whose lines named no location."""
    return _fingerprint([customer_id, ttl_seconds, [[ln.sku, ln.quantity, ""] for ln in lines]])


def hold_member(reservation_id: str, customer_id: str, allocations: list[list[Any]]) -> str:
    """`<rid>|<customer>|<loc>=<qty>;...`, exactly as includes/holds.lua hold_member."""
    body = ";".join(f"{loc}={qty}" for loc, qty in allocations)
    return f"{reservation_id}|{customer_id}|{body}"


def allocations_by_sku(lines: Sequence[ReservationLine]) -> dict[str, list[list[Any]]]:
    """Per SKU, [[location, quantity], ...] in first-seen order (includes/holds.lua)."""
    by_sku: dict[str, list[list[Any]]] = {}
    for line in lines:
        agg = by_sku.setdefault(line.sku, [])
        for a in line.allocations:
            for item in agg:
                if item[0] == a.location:
                    item[1] += a.quantity
                    break
            else:
                agg.append([a.location, a.quantity])
    return by_sku


async def redis_has_data(redis: RedisClient, schema: KeySchema) -> bool:
    """Any flashsale key besides empty event streams (a worker recreates those on its own)."""
    streams = {p.events for p in schema.all()}
    async for raw in redis.scan_iter(match="{p*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        if key not in streams or await redis.xlen(key) > 0:
            return True
    return False


async def restore(
    redis: RedisClient,
    settings: EngineSettings,
    skus: Iterable[SkuImage],
    reservations: Iterable[ReservationImage],
    stream_tops: Mapping[int, str],
    *,
    now_ms: int,
    force: bool = False,
    operations: Iterable[OperationImage] = (),
    partition: int | None = None,
) -> RestoreReport:
    """Writes the image; `stream_tops` is the newest stream id Postgres has per partition.

    `partition`: rebuild that partition alone (its keys are cleared first; the others keep
    selling). Every partition restored is then marked verified on this Redis server, so it
    sells again (engine.fencing)."""
    schema = KeySchema(settings.partitions)
    only = None if partition is None else schema.partition(partition)
    if only is not None:
        await _clear_partition(redis, only)
    elif not force and await redis_has_data(redis, schema):
        raise RedisNotEmpty("Redis still holds flashsale data: restore refuses to overwrite it")
    report = RestoreReport()
    skus = list(skus)
    reservations = list(reservations)
    homes = {s.sku: _partition(schema, s.sku, s.config) for s in skus}
    if only is not None:
        skus = [s for s in skus if homes[s.sku] == only]
        mine = [r for r in reservations if r.lines and homes.get(r.skus[0]) == only]
    else:
        mine = reservations
    plans = _plan(schema, skus, mine, now_ms, settings.retention_seconds * 1000, report)
    await _restore_placements(redis, plans)
    scripts = Scripts(redis)
    script = scripts["restore_sku"]
    for p in plans:
        part = _partition(schema, p.sku, p.config)
        customers = [[customer, *counts] for customer, counts in p.customers.items()]
        calls = max(1, -(-max(len(p.holds), len(customers), len(p.hashes)) // CHUNK))
        for n in range(calls):
            chunk = slice(n * CHUNK, (n + 1) * CHUNK)
            hashes = p.hashes[chunk]
            keys, args = restore_sku_call(
                part,
                p.sku,
                mode="append" if n else "replace",
                config_json="" if n else _json(p.config),
                quantities_json="" if n else _json(p.quantities()),
                holds_json=_json(p.holds[chunk]),
                customers_json=_json(customers[chunk]),
                reservation_ids=[rid for rid, _ in hashes],
                reservations_json=_json([h for _, h in hashes]),
            )
            decode(await script(keys=keys, args=args))
        report.skus += 1
    retention_ms = settings.retention_seconds * 1000
    if only is not None:
        operations = [op for op in operations if homes.get(op.sku) == only]
    await _restore_operations(redis, homes, schema, operations, now_ms, retention_ms)
    await _restore_carts(redis, schema, homes, reservations, now_ms, retention_ms, only)
    for part in schema.all() if only is None else (only,):
        await _prepare_stream(redis, part.events, stream_tops.get(part.number))
        await adopt(scripts["fence"], part)
    return report


async def _clear_partition(redis: RedisClient, part: Partition) -> None:
    """Deletes the partition's keys but its event stream (the worker may still owe Postgres
    entries of it) and its fence state (adopt replaces it once the rebuild is written)."""
    keep = {part.events, part.verified, part.fenced}
    doomed: list[str] = []
    async for raw in redis.scan_iter(match=f"{part.tag}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        if key not in keep:
            doomed.append(key)
    for n in range(0, len(doomed), CHUNK):
        await redis.delete(*doomed[n : n + CHUNK])


@dataclass
class _SkuPlan:
    sku: str
    config: Mapping[str, Any]
    image: SkuImage
    reserved: dict[str, int] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)
    committed_backordered: dict[str, int] = field(default_factory=dict)  # of `committed`
    holds: list[list[Any]] = field(default_factory=list)
    customers: dict[str, list[int]] = field(default_factory=dict)  # customer -> [units, holds]
    hashes: list[tuple[str, list[Any]]] = field(default_factory=list)

    def locations(self) -> list[str]:
        return [loc["location"] for loc in self.config["locations"]]

    def quantities(self) -> list[list[Any]]:
        return [
            [
                loc,
                self.image.on_hand.get(loc, 0),
                self.reserved.get(loc, 0),
                self.committed.get(loc, 0),
                self.committed_backordered.get(loc, 0),
            ]
            for loc in self.locations()
        ]

    def count(self, customer: str, units: int, holds: int) -> None:
        counters = self.customers.setdefault(customer, [0, 0])
        counters[0] += units
        counters[1] += holds


def _plan(
    schema: KeySchema,
    skus: Iterable[SkuImage],
    reservations: Iterable[ReservationImage],
    now_ms: int,
    retention_ms: int,
    report: RestoreReport,
) -> list[_SkuPlan]:
    plans = {img.sku: _SkuPlan(img.sku, img.config, img) for img in skus}
    for r in reservations:
        configs = {sku: plans[sku].config if sku in plans else {} for sku in r.skus}
        if len({_partition(schema, sku, cfg).number for sku, cfg in configs.items()}) != 1:
            raise RestoreError(f"reservation {r.id}: one part must stay in one partition")
        fields = _hash_fields(r, now_ms, retention_ms)
        if fields is None:
            continue
        for sku, allocs in allocations_by_sku(r.lines).items():
            p = plans.get(sku)
            if p is None:
                raise RestoreError(f"reservation {r.id} holds SKU {sku}, which has no config")
            if r.status == "held" and sku not in r.expired_skus:
                p.holds.append([hold_member(r.id, r.customer_id, allocs), r.expires_at_ms])
                p.count(r.customer_id, sum(q for _, q in allocs), 1)
                for loc, qty in allocs:
                    p.reserved[loc] = p.reserved.get(loc, 0) + qty
                report.holds += 1
            elif r.status == "committed":
                for line in r.lines:
                    for a in line.allocations if line.sku == sku else ():
                        open_units = a.quantity - a.fulfilled
                        p.committed[a.location] = p.committed.get(a.location, 0) + open_units
                        # In-stock units ship first (lua/fulfil.lua): the open ones are late.
                        late = max(0, min(a.backordered, open_units))
                        p.committed_backordered[a.location] = (
                            p.committed_backordered.get(a.location, 0) + late
                        )
                        p.count(r.customer_id, open_units, 0)
        plans[r.skus[0]].hashes.append((r.id, fields))
        report.reservations += 1
    for p in plans.values():
        _check(p, report)
    return list(plans.values())


def _check(p: _SkuPlan, report: RestoreReport) -> None:
    known = set(p.locations())
    for loc in (set(p.reserved) | set(p.committed)) - known:
        raise RestoreError(f"SKU {p.sku}: reservations hold units at unknown location {loc}")
    for name, derived, seen in (
        ("reserved", p.reserved, p.image.reserved),
        ("committed", p.committed, p.image.committed),
    ):
        for loc in known:
            if seen and derived.get(loc, 0) != seen.get(loc, 0):
                report.warnings.append(
                    f"{p.sku}@{loc}: {name} {seen.get(loc, 0)} in the image, "
                    f"{derived.get(loc, 0)} from its reservations (restored)"
                )


def _hash_fields(r: ReservationImage, now_ms: int, retention_ms: int) -> list[Any] | None:
    """[pexpireat (0: none), field, value, ...] as the scripts keep it; None: past retention."""
    if r.status == "held":
        expire = r.expires_at_ms + retention_ms
    elif r.status == "committed":
        expire = 0
    else:
        expire = (r.finished_at_ms or r.expires_at_ms) + retention_ms
        if expire <= now_ms:
            return None
    lines = [
        [
            ln.sku,
            ln.quantity,
            [[a.location, a.quantity, a.backordered, a.fulfilled] for a in ln.allocations],
        ]
        for ln in r.lines
    ]
    fields = {
        "fp": r.fingerprint,
        "cust": r.customer_id,
        "st": r.status,
        "exp": str(r.expires_at_ms),
        "ext": str(r.extensions),
        "ca": str(r.created_at_ms),
        "skus": "\n".join(r.skus),
        "lines": _json(lines),
    }
    if r.order_id:
        fields["ord"] = r.order_id
    if r.incarnation:
        fields["gen"] = r.incarnation
    fields.update({f"fid:{fid}": request for fid, request in r.fulfilments.items()})
    return [expire, *(x for pair in fields.items() for x in pair)]


async def _restore_carts(
    redis: RedisClient,
    schema: KeySchema,
    homes: Mapping[str, Partition],
    reservations: Sequence[ReservationImage],
    now_ms: int,
    retention_ms: int,
    only: Partition | None = None,
) -> None:
    """The decision record of every cart spanning partitions, from the states of its parts
    (`only`: of the carts whose record lives in that partition).

    Parts in one state give the record that state. Parts that disagree were caught mid-way by
    the loss (a commit or a release between two partitions): the record is restored in the
    transient state that explains them, already due, so the sweeper finishes it.
    """
    by_id: dict[str, list[tuple[int, ReservationImage]]] = {}
    for r in reservations:
        if _hash_fields(r, now_ms, retention_ms) is not None:
            if r.lines and r.skus[0] in homes:
                by_id.setdefault(r.id, []).append((homes[r.skus[0]].number, r))
    for rid, parts in by_id.items():
        if len(parts) < 2 or only is not None and min(n for n, _ in parts) != only.number:
            continue
        parts.sort(key=lambda p: p[0])
        images = [r for _, r in parts]
        state, ends_as = _cart_state({r.status for r in images})
        first = images[0]
        fields: dict[Any, Any] = {
            "st": state,
            "fp": first.fingerprint,
            "cust": first.customer_id,
            "gen": first.incarnation,
            "parts": _json([[n, "\n".join(r.skus)] for n, r in parts]),
            "lines": _json([[ln.sku, ln.quantity, ""] for r in images for ln in r.lines]),
            "ttl": str(max(0, first.expires_at_ms - first.created_at_ms)),
            "ord": next((r.order_id for r in images if r.order_id), ""),
            "to": ends_as,
            "upd": str(now_ms),
        }
        home = schema.partition(parts[0][0])
        await redis.hset(home.cart(rid), mapping=fields)
        if state in ("held", "released", "expired", "fulfilled"):
            ends = max(r.finished_at_ms or r.expires_at_ms for r in images)
            await redis.pexpireat(home.cart(rid), ends + retention_ms)
        if state in ("committing", "releasing"):
            await redis.zadd(home.carts, {rid: now_ms})


def _cart_state(statuses: set[str]) -> tuple[str, str]:
    """(record state, where a release ends) for the statuses of a spanning cart's parts."""
    if len(statuses) == 1:
        return next(iter(statuses)), ""
    if statuses <= {"committed", "fulfilled"}:
        return "committed", ""
    if statuses <= {"held", "committed"}:
        return "committing", ""  # the sweeper commits the rest, or backs out if it cannot
    if "expired" in statuses:
        return "releasing", "expired"
    return "releasing", "released"


def _partition(schema: KeySchema, sku: str, config: Mapping[str, Any]) -> Partition:
    return schema.placed(sku, config.get("placement_group"))


async def _restore_placements(redis: RedisClient, plans: Sequence[_SkuPlan]) -> None:
    """The directory entry of every SKU, as configure_sku wrote it ("" for no group)."""
    async with redis.pipeline(transaction=False) as pipe:
        for p in plans:
            pipe.set(placement(p.sku), p.config.get("placement_group") or "")
        await pipe.execute()


async def _restore_operations(
    redis: RedisClient,
    homes: Mapping[str, Partition],
    schema: KeySchema,
    operations: Iterable[OperationImage],
    now_ms: int,
    retention_ms: int,
) -> None:
    """Each record as change_on_hand.lua keeps it, until the end of its retention window."""
    async with redis.pipeline(transaction=False) as pipe:
        for op in operations:
            until = op.recorded_at_ms + retention_ms
            if until <= now_ms:
                continue
            record = _json({"fp": op.fingerprint, "answer": op.answer})
            part = homes.get(op.sku) or schema.for_sku(op.sku)
            pipe.set(part.operation(op.key), record, pxat=until)
        await pipe.execute()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _prepare_stream(redis: RedisClient, stream: str, top: str | None) -> None:
    try:
        await redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    if top is None:
        return
    info = await redis.xinfo_stream(stream)
    if parse_stream_id(info["last-generated-id"]) < parse_stream_id(top):
        await redis.execute_command("XSETID", stream, top)
