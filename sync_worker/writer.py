"""One batch of stream entries → one Postgres transaction.

Ledger rows go in with `ON CONFLICT (partition, stream_id) DO NOTHING RETURNING`; only the rows
that came back (new ones, not redeliveries) touch skus, levels and reservations. Bulk rows reach
Postgres by COPY into staging tables (ledger rows as parse formatted them, from the entry's own
bytes; reservation rows formatted by psycopg in C), the rest as arrays (`unnest`),
so a batch costs a handful of round trips, not one per event. Rows are written in a fixed order
(by key) so concurrent workers lock in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson
from psycopg import AsyncConnection, AsyncCursor
from psycopg.types.json import set_json_loads

from engine import events
from engine.streams import parse_stream_id
from sync_worker import reservations_sql
from sync_worker.db import columns, ms
from sync_worker.entries import LINE_TYPES, Entry, Row

# Per-connection staging tables: a batch goes in with COPY, then one INSERT … SELECT moves it into
# the ledger. sync_ledger's columns after (p, s) are the event's fields in stream order: parse
# passes each entry's values on as they came (the worker never formats a ledger row), so an empty
# field arrives as '' and becomes NULL here.
STAGING = """
CREATE TEMP TABLE IF NOT EXISTS sync_ledger (p int, s text, t text, k text, l text, doh bigint,
    drs bigint, dcm bigint, oh bigint, rs bigint, cm bigint, av bigint, rid text, oid text,
    cid text, rsn text, ref text, bo bigint, exp text, d text, ts bigint) ON COMMIT DELETE ROWS;
"""
_COPY_LEDGER = "COPY sync_ledger FROM STDIN"
_LEDGER = f"""
INSERT INTO inventory_transactions (partition, stream_id, type, sku, location, d_on_hand,
    d_reserved, d_committed, on_hand, reserved, committed, available, reservation_id, order_id,
    customer_id, reason, reference, backordered, expires_at, data, occurred_at)
SELECT p, s, t, k, l, doh, drs, dcm, oh, rs, cm, av, NULLIF(rid, ''), NULLIF(oid, ''),
    NULLIF(cid, ''), NULLIF(rsn, ''), NULLIF(ref, ''), bo, {ms("NULLIF(exp, '')::bigint")},
    NULLIF(d, '')::jsonb, {ms("ts")}
FROM sync_ledger
ORDER BY p, s
ON CONFLICT (partition, stream_id) DO NOTHING
RETURNING partition, stream_id
"""
_SKUS = """INSERT INTO skus (sku, partition) SELECT * FROM unnest(%s::text[], %s::int[])
ON CONFLICT (sku) DO NOTHING"""
_LOCATIONS = """INSERT INTO locations (location) SELECT unnest(%s::text[])
ON CONFLICT (location) DO NOTHING"""
_CONFIG = f"""
INSERT INTO skus AS s (sku, partition, config, config_ms, config_seq, configured_at)
VALUES (%s, %s, %s::jsonb, %s, %s, {ms("%s")})
ON CONFLICT (sku) DO UPDATE SET partition = EXCLUDED.partition, config = EXCLUDED.config,
    config_ms = EXCLUDED.config_ms, config_seq = EXCLUDED.config_seq,
    configured_at = EXCLUDED.configured_at
WHERE (s.config_ms, s.config_seq) < (EXCLUDED.config_ms, EXCLUDED.config_seq)
RETURNING sku
"""
_LEVEL_CONFIG = """
INSERT INTO inventory_levels (sku, location, safety_stock, backorder_limit, incoming)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])
ON CONFLICT (sku, location) DO UPDATE SET safety_stock = EXCLUDED.safety_stock,
    backorder_limit = EXCLUDED.backorder_limit, incoming = EXCLUDED.incoming, updated_at = now()
"""
_LEVELS = """
INSERT INTO inventory_levels AS v (sku, location, on_hand, reserved, committed, last_ms, last_seq)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],
    %s::bigint[], %s::bigint[])
ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand,
    reserved = EXCLUDED.reserved, committed = EXCLUDED.committed, last_ms = EXCLUDED.last_ms,
    last_seq = EXCLUDED.last_seq, updated_at = now()
WHERE (v.last_ms, v.last_seq) < (EXCLUDED.last_ms, EXCLUDED.last_seq)
"""
_DEAD = """
INSERT INTO sync_dead_letters (partition, stream_id, fields, error)
SELECT p, s, f::jsonb, e FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[])
  AS u(p, s, f, e)
ON CONFLICT (partition, stream_id) DO NOTHING
"""


# A batch is written only while each of its partitions is verified on the Redis server it was read
# from (sync_worker.fencing), and it raises the partition's newest synced stream id. Rows are
# locked in partition order, after every other lock of the batch: concurrent batches and the
# fence check (which locks one row) never wait on each other in a cycle.
_LOCK_PARTITIONS = """
SELECT partition FROM sync_partitions WHERE partition = ANY(%s) ORDER BY partition FOR UPDATE
"""
_ADVANCE = """
UPDATE sync_partitions AS s SET
    high_ms = CASE WHEN (s.high_ms, s.high_seq) < (u.ms, u.seq) THEN u.ms ELSE s.high_ms END,
    high_seq = CASE WHEN (s.high_ms, s.high_seq) < (u.ms, u.seq) THEN u.seq ELSE s.high_seq END
FROM unnest(%s::int[], %s::text[], %s::bigint[], %s::bigint[]) AS u(p, run, ms, seq)
WHERE s.partition = u.p AND s.verified_run = u.run
RETURNING s.partition
"""

Sources = dict[int, tuple[str, tuple[int, int]]]  # partition -> (run_id read from, newest id)


class UnverifiedSource(Exception):
    """Entries of the batch came from a Redis server Postgres does not (or no longer) accept for
    their partition: it restarted or failed over since, and is not verified yet, or is fenced.
    Nothing was written; the entries stay pending and are read again."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"partition(s) {partitions} not verified on the Redis server read from")
        self.partitions = partitions


def sources_of(
    rows: Sequence[Row], dead: Iterable[Entry], entry_of: Mapping[tuple[int, str], Entry]
) -> Sources:
    """Per partition, the server a batch's entries came from and the newest of them (a row's
    position was parsed with it); entries whose server is not known (tombstones of claimed
    entries) are left out."""
    newest: dict[int, Row] = {}
    for row in rows:
        known = newest.get(row.partition)
        if known is None or known.pos < row.pos:
            newest[row.partition] = row
    found = [(entry_of[row.key], row.pos) for row in newest.values()]
    if not all(entry.run for entry, _ in found):  # the newest is not known: look at them all
        found = [(entry_of[row.key], row.pos) for row in rows]
    found += [(entry, parse_stream_id(entry.stream_id)) for entry in dead]
    sources: Sources = {}
    for entry, pos in found:
        if entry.run:
            source = sources.get(entry.partition)
            if source is None or source[1] < pos:
                sources[entry.partition] = (entry.run, pos)
    return sources


@dataclass(frozen=True, slots=True)
class BatchResult:
    inserted: int
    duplicates: int
    dead: int


async def prepare(conn: AsyncConnection) -> None:
    """Creates this connection's staging tables; once per connection, before its first batch."""
    set_json_loads(orjson.loads, conn)  # the reservation rebuild reads a JSON column per row
    async with conn.transaction():
        await conn.execute(STAGING + reservations_sql.STAGING)


async def write_batch(
    conn: AsyncConnection,
    rows: list[Row],
    dead: list[tuple[Entry, str]],
    sources: Sources | None = None,
) -> BatchResult:
    """Writes the batch in one transaction; with `sources`, only if every partition in it is
    verified on the server its entries came from (else UnverifiedSource, nothing written)."""
    unique = {(row.partition, row.stream_id): row for row in rows}
    async with conn.transaction(), conn.cursor() as cur:
        fresh = await _insert_ledger(cur, unique)
        await _upsert_names(cur, fresh)
        await _apply_config(cur, fresh)
        await _apply_levels(cur, fresh)
        await reservations_sql.refresh(cur, fresh)
        if dead:
            await cur.execute(_DEAD, columns([_dead_row(e, why) for e, why in dead], 4))
        if sources:
            await _advance(cur, sources)
    return BatchResult(len(fresh), len(unique) - len(fresh), len(dead))


async def _advance(cur: AsyncCursor, sources: Sources) -> None:
    order = sorted(sources)
    await cur.execute(_LOCK_PARTITIONS, (order,))
    values = [(p, sources[p][0], *sources[p][1]) for p in order]
    await cur.execute(_ADVANCE, columns(values, 4))
    accepted = {p for (p,) in await cur.fetchall()}
    if len(accepted) != len(order):
        raise UnverifiedSource([p for p in order if p not in accepted])


async def _insert_ledger(cur: AsyncCursor, rows: dict[tuple[int, str], Row]) -> list[Row]:
    if not rows:
        return []
    async with cur.copy(_COPY_LEDGER) as copy:
        await copy.write(b"".join([r.copy_line for r in rows.values()]))
    await cur.execute(_LEDGER)
    return [rows[(p, s)] for p, s in await cur.fetchall()]


async def _upsert_names(cur: AsyncCursor, rows: list[Row]) -> None:
    skus = sorted({r.sku: r.partition for r in rows}.items())
    if skus:
        await cur.execute(_SKUS, columns(skus, 2))
    names = {r.location for r in rows if r.location}
    for r in rows:
        if r.type == events.SKU_CONFIGURED:
            names.update(loc["location"] for loc in r.data["locations"])
    if names:
        await cur.execute(_LOCATIONS, (sorted(names),))


async def _apply_config(cur: AsyncCursor, rows: list[Row]) -> None:
    for r in _latest(rows, lambda r: r.sku if r.type == events.SKU_CONFIGURED else None):
        config = orjson.dumps(r.data).decode()
        await cur.execute(_CONFIG, (r.sku, r.partition, config, *r.pos, r.ts))
        if await cur.fetchone() is None:
            continue  # a newer configuration is already in place
        locs = sorted(r.data["locations"], key=lambda loc: loc["location"])
        await cur.execute(
            _LEVEL_CONFIG,
            columns(
                [
                    (
                        r.sku,
                        loc["location"],
                        int(loc.get("safety_stock") or 0),
                        int(loc.get("backorder_limit") or 0),
                        int(loc.get("incoming") or 0),
                    )
                    for loc in locs
                ],
                5,
            ),
        )


async def _apply_levels(cur: AsyncCursor, rows: list[Row]) -> None:
    latest = _latest(rows, lambda r: (r.sku, r.location) if r.type in LINE_TYPES else None)
    if latest:
        values = [
            (r.sku, r.location, r.on_hand, r.reserved, r.committed, *r.pos)
            for r in sorted(latest, key=lambda r: (r.sku, r.location))
        ]
        await cur.execute(_LEVELS, columns(values, 7))


def _latest(rows: list[Row], key_of: Callable[[Row], Hashable | None]) -> list[Row]:
    """The newest row (stream order) per key; rows whose key is None are skipped."""
    best: dict[Hashable, Row] = {}
    for r in rows:
        key = key_of(r)
        if key is not None and (key not in best or best[key].pos < r.pos):
            best[key] = r
    return list(best.values())


def _dead_row(entry: Entry, why: str) -> tuple[object, ...]:
    fields = orjson.dumps(entry.printable()).decode() if entry.fields else None
    return (entry.partition, entry.stream_id, fields, why)
