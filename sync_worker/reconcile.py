"""`flashsale reconcile`: does Postgres say what Redis says, for every SKU and location?

Per partition, one MULTI reads the SKU hashes and the stream's first and last ids together: a
snapshot of Redis and the span of the events that produced it. Postgres is then read and moved
forward by the stream entries it has not synced yet (levels keep the stream id of the event they
were set from), so the check works while the worker lags. If Postgres turns out to be ahead of the
snapshot (events arrived and synced in between), the partition is read again.

The entries are read after Postgres, up to the snapshot's last id, `page_size` at a time: never
the whole stream in one command (a lagging worker's backlog would block Redis for everyone).
Entries appended meanwhile lie past that id and are not read. The worker may trim entries while
we page, but only ones it has written to Postgres; such an entry is missing from our Postgres
read only if it was trimmed after it, so each page starts at the entry the previous one ended
with (the first page at the snapshot's first entry): if that entry is gone, the worker trimmed
past our position, and the partition is read again. `deep` also checks that summing the
ledger's deltas gives the levels: a gap or a duplicate in the ledger shows there.

Comparing levels cannot see a Redis that came back older than Postgres (restarted from an older
file, a promoted replica that lagged) once the lost events cancel out, or once new writes moved
its stream past them. So each partition's sequence is checked too: Postgres' newest synced stream
id against the stream's last generated id, and the partition's fence (engine.fencing). A partition
behind Postgres or fenced fails the check; one merely waiting for the worker's comparison is named.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from psycopg import AsyncConnection
from redis.exceptions import ResponseError

from engine import events
from engine.connection import RedisClient, connect_url
from engine.fencing import PartitionState, statuses, stream_id_text
from engine.keys import KeySchema, Partition
from engine.scripts import Scripts
from engine.streams import parse_stream_id
from sync_worker.db import connect
from sync_worker.entries import LINE_TYPES

QUANTITIES = ("on_hand", "reserved", "committed", "safety_stock", "backorder_limit", "incoming")
_REDIS_FIELD = dict(zip(QUANTITIES, ("oh", "rs", "cm", "ss", "bl", "in"), strict=True))
CONFIG_FIELDS = (
    "placement_group",
    "purchase_limit",
    "max_active_holds_per_customer",
    "max_extensions",
    "allocation_strategy",
    "low_stock_threshold",
    "backorder_lead_days",
    "sale_starts_at",
    "sale_ends_at",
)
ATTEMPTS = 5
PAGE_SIZE = 1000  # stream entries per XRANGE: a bounded, millisecond-scale command

_PG_SKUS = "SELECT sku, config, config_ms, config_seq FROM skus WHERE partition = %s"
_PG_LEVELS = f"""SELECT sku, location, {", ".join(QUANTITIES)}, last_ms, last_seq
FROM inventory_levels WHERE sku = ANY(%s)"""
_PG_NEWEST = "SELECT partition, high_ms, high_seq FROM sync_partitions"
_LEDGER_SUMS = """SELECT l.sku, l.location, l.on_hand, l.reserved, l.committed,
    coalesce(sum(t.d_on_hand), 0), coalesce(sum(t.d_reserved), 0), coalesce(sum(t.d_committed), 0)
FROM inventory_levels l LEFT JOIN inventory_transactions t USING (sku, location)
GROUP BY l.sku, l.location, l.on_hand, l.reserved, l.committed"""


@dataclass(frozen=True, slots=True)
class Drift:
    sku: str
    location: str
    field: str
    redis: Any
    postgres: Any


@dataclass(frozen=True, slots=True)
class PartitionSequence:
    """A partition whose Redis is not known to be at least as new as Postgres."""

    partition: int
    postgres_newest: tuple[int, int]  # the newest stream id Postgres synced
    redis_last: tuple[int, int]  # the stream's last generated id on the Redis answering now
    state: PartitionState  # "recovering": the worker has not compared it with Postgres yet

    @property
    def behind(self) -> bool:
        """Postgres holds events this Redis never made: it lost acknowledged writes."""
        return self.postgres_newest > self.redis_last

    @property
    def failed(self) -> bool:
        return self.behind or self.state == "fenced"

    def describe(self) -> str:
        ids = (
            f"Postgres synced up to {stream_id_text(self.postgres_newest)}, "
            f"its Redis stream is at {stream_id_text(self.redis_last)}"
        )
        if self.state == "fenced":
            what = f"fenced, sells nothing until `flashsale restore --partition {self.partition}`"
        elif self.behind:
            what = "behind Postgres: Redis lost writes Postgres has"
        else:
            what = "not verified yet: the sync worker compares it after a Redis restart"
        return f"partition {self.partition} {what} ({ids})"


@dataclass
class ReconcileResult:
    drifts: list[Drift] = field(default_factory=list)
    skus: int = 0
    levels: int = 0
    unsynced_applied: int = 0  # stream entries Postgres did not have yet, accounted for
    # Partitions where Postgres holds events newer than Redis' stream, read after read: Redis lost
    # writes it had acknowledged (a crash under appendfsync everysec/no), or the sale never paused.
    ahead: list[int] = field(default_factory=list)
    # Partitions behind Postgres, fenced or not verified on the Redis answering (see the module).
    sequences: list[PartitionSequence] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A difference, or a partition whose Redis is behind Postgres or fenced."""
        return bool(self.drifts) or any(s.failed for s in self.sequences)


async def reconcile_urls(
    partitions: int,
    redis_url: str,
    database_url: str,
    *,
    deep: bool = False,
    page_size: int = PAGE_SIZE,
    cluster: bool = False,
) -> ReconcileResult:
    """reconcile() on connections of its own to the two servers (`cluster`: Redis is one)."""
    async with (
        connect_url(redis_url, cluster=cluster) as redis,
        await connect(database_url) as conn,
    ):
        return await reconcile(redis, conn, KeySchema(partitions), deep=deep, page_size=page_size)


async def reconcile(
    redis: RedisClient,
    conn: AsyncConnection,
    schema: KeySchema,
    *,
    deep: bool = False,
    page_size: int = PAGE_SIZE,
) -> ReconcileResult:
    if page_size < 2:  # each page repeats the entry the previous one ended with
        raise ValueError(f"page_size must be at least 2, got {page_size}")
    result = ReconcileResult()
    result.sequences = await _sequences(redis, conn, schema)
    for part in schema.all():
        for attempt in range(ATTEMPTS):
            final = attempt == ATTEMPTS - 1
            if await _partition(redis, conn, part, result, page_size, final=final):
                break
            await asyncio.sleep(0.05 * (attempt + 1))
    if deep:
        async with conn.cursor() as cur:
            await cur.execute(_LEDGER_SUMS)
            for sku, loc, oh, rs, cm, s_oh, s_rs, s_cm in await cur.fetchall():
                for name, level, total in (
                    ("on_hand", oh, s_oh),
                    ("reserved", rs, s_rs),
                    ("committed", cm, s_cm),
                ):
                    if level != total:
                        result.drifts.append(Drift(sku, loc, f"ledger sum of {name}", None, total))
    return result


async def _sequences(
    redis: RedisClient, conn: AsyncConnection, schema: KeySchema
) -> list[PartitionSequence]:
    """Every partition that is behind Postgres, fenced or unverified.

    Postgres is read first: each id it holds was read from a stream before, and a stream's last
    id only grows on one server, so a sale running meanwhile cannot make a partition look behind.
    """
    async with conn.cursor() as cur:
        await cur.execute(_PG_NEWEST)
        newest = {int(p): (int(ms), int(seq)) for p, ms, seq in await cur.fetchall()}
        await conn.rollback()
    found = []
    for status in await statuses(Scripts(redis)["fence"], schema):
        seq = PartitionSequence(
            status.partition, newest.get(status.partition, (0, 0)), status.last, status.state
        )
        # "new": no marker and a stream that never had an entry, claimed by its first write.
        if seq.behind or seq.state not in ("verified", "new"):
            found.append(seq)
    return found


async def _partition(
    redis: RedisClient,
    conn: AsyncConnection,
    part: Partition,
    result: ReconcileResult,
    page_size: int,
    final: bool,
) -> bool:
    """Compares one partition; False when it should be read again (Postgres ahead, or trimmed)."""
    names = sorted(_text(s) for s in await redis.smembers(part.skus))
    async with redis.pipeline(transaction=True) as pipe:
        for sku in names:
            pipe.hgetall(part.sku(sku))
        pipe.xinfo_stream(part.events)
        replies = await pipe.execute(raise_on_error=False)
    *hashes, info = replies
    if isinstance(info, ResponseError) or not info.get("first-entry"):
        span = None  # no stream, or an empty one: no entry to catch up with
        top = (
            (0, 0)
            if isinstance(info, ResponseError)
            else parse_stream_id(info["last-generated-id"])
        )
    else:
        span = (_text(info["first-entry"][0]), _text(info["last-generated-id"]))
        top = parse_stream_id(span[1])
    redis_side = {
        sku: {_text(k): _text(v) for k, v in h.items()}
        for sku, h in zip(names, hashes, strict=True)
    }

    async with conn.cursor() as cur:
        await cur.execute(_PG_SKUS, (part.number,))
        pg_skus = {sku: [cfg, (ms, seq)] for sku, cfg, ms, seq in await cur.fetchall()}
        await cur.execute(_PG_LEVELS, (sorted(set(names) | set(pg_skus)),))
        pg_levels = {(r[0], r[1]): [*r[2:8], (r[8], r[9])] for r in await cur.fetchall()}
        await conn.rollback()  # a read-only look: end the implicit transaction
    ahead = any(v[1] > top for v in pg_skus.values()) or any(v[6] > top for v in pg_levels.values())
    if ahead and top != (0, 0):  # (0, 0): no stream at all, nothing can arrive meanwhile
        if not final:
            return False
        result.ahead.append(part.number)
    entries, complete = await _entries(redis, part.events, span, page_size)
    if not complete:
        if not final:
            return False
        if part.number not in result.ahead:
            result.ahead.append(part.number)  # the sale kept changing: the CLI says so
    applied = _catch_up(entries, pg_skus, pg_levels)

    for sku in sorted(set(redis_side) | {s for s, v in pg_skus.items() if v[0] is not None}):
        _compare_sku(sku, redis_side.get(sku), pg_skus.get(sku, [None])[0], pg_levels, result)
    result.unsynced_applied += applied
    return True


async def _entries(
    redis: RedisClient, stream: str, span: tuple[str, str] | None, page_size: int
) -> tuple[list[Any], bool]:
    """The entries from the first to the last id of `span`, read `page_size` at a time, and
    whether none was trimmed before it was read (each page must start with its anchor entry)."""
    if span is None:
        return [], True
    anchor, last = span
    entries: list[Any] = []
    while True:
        page: list[Any] = list(await redis.xrange(stream, anchor, last, count=page_size) or [])
        if not page or _text(page[0][0]) != anchor:
            return entries, False  # trimmed past our position: an entry may be missing
        entries += page[1:] if entries else page  # a later page repeats its anchor
        if len(page) < page_size:
            return entries, True
        anchor = _text(page[-1][0])


def _catch_up(entries: list[Any], skus: dict[str, Any], levels: dict[Any, Any]) -> int:
    applied = 0
    for stream_id, raw in entries:
        pos = parse_stream_id(stream_id)
        f = {_text(k): _text(v) for k, v in raw.items()}
        kind, sku, loc = f.get("type"), f.get("sku", ""), f.get("location", "")
        if kind == events.SKU_CONFIGURED and pos > skus.get(sku, [None, (0, 0)])[1]:
            config = orjson.loads(f["data"])
            skus[sku] = [config, pos]
            for c in config["locations"]:
                row = levels.setdefault((sku, c["location"]), [0] * 6 + [(0, 0)])
                row[3:6] = [c["safety_stock"], c["backorder_limit"], c["incoming"]]
            applied += 1
        elif kind in LINE_TYPES:
            row = levels.setdefault((sku, loc), [0] * 6 + [(0, 0)])
            if pos > row[6]:
                row[0:3] = [int(f["on_hand"]), int(f["reserved"]), int(f["committed"])]
                row[6] = pos
                applied += 1
    return applied


def _compare_sku(
    sku: str, h: dict[str, str] | None, config: Any, levels: dict[Any, Any], out: ReconcileResult
) -> None:
    out.skus += 1
    if h is None or config is None:
        out.drifts.append(
            Drift(sku, "", "sku", "present" if h else "missing", "present" if config else "missing")
        )
        return
    cfg = orjson.loads(h["cfg"])
    locations = [c["location"] for c in config["locations"]]
    if cfg["locations"] != locations:
        out.drifts.append(Drift(sku, "", "locations", cfg["locations"], locations))
    for name in CONFIG_FIELDS:
        if cfg.get(name) != config.get(name):
            out.drifts.append(Drift(sku, "", name, cfg.get(name), config.get(name)))
    for loc in cfg["locations"]:
        out.levels += 1
        row = levels.get((sku, loc), [0] * 6)
        for i, name in enumerate(QUANTITIES):
            in_redis = int(h.get(f"{_REDIS_FIELD[name]}:{loc}", "0"))
            if in_redis != row[i]:
                out.drifts.append(Drift(sku, loc, name, in_redis, row[i]))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
