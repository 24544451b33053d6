"""Rewrites the reservation rows a batch touched from their ledger rows (see reservations.py).

Each reservation part is locked first (a transaction-scoped advisory lock), then read: under READ
COMMITTED the read sees every row committed by a worker that held the lock before us, so the last
of two concurrent workers to take the lock rebuilds from both batches' rows. The batch's own new
rows are not read back: the rebuild takes them as parsed (entries.Row), and the read asks only
for rows other transactions wrote (earlier batches, other workers).

Only `reserved`, `fulfilled` and `expired` rows shape a reservation's lines. A part whose new rows
are all of other kinds (a commit, a release, an extension) gets its reservation row rewritten and
keeps its lines: whoever held the lock last wrote them from every such row committed so far.
"""

from __future__ import annotations

from typing import Any

import orjson
from psycopg import AsyncCursor

from engine import events
from engine.restore import request_fingerprint
from engine.types import Allocation, ReservationLine
from sync_worker.db import epoch_ms, ms
from sync_worker.entries import RESERVATION_TYPES, Row
from sync_worker.reservations import LedgerRow, ResEvent, State, rebuild

# The keys arrive sorted and unnest yields them in array order: every worker locks in one order.
# count() sends back one row, not one per key.
_LOCK = """SELECT count(pg_advisory_xact_lock(hashtext(k), p))
FROM unnest(%s::text[], %s::int[]) AS u(k, p)"""
_READ = f"""
SELECT reservation_id, partition, split_part(stream_id, '-', 1)::bigint,
    split_part(stream_id, '-', 2)::bigint, type, sku, location, d_reserved, d_committed, order_id,
    customer_id, reference, backordered, CASE WHEN type = '{events.RESERVED}' THEN data END,
    {epoch_ms("occurred_at")}, {epoch_ms("expires_at")}
FROM inventory_transactions
WHERE reservation_id = ANY(%s) AND type = ANY(%s) AND xmin <> pg_current_xact_id()::xid
"""  # xmin: not the rows this transaction inserted (the rebuild has them as parsed)
# The rebuilt rows go in with COPY to staging tables (see writer.STAGING), then set-based SQL.
STAGING = """
CREATE TEMP TABLE IF NOT EXISTS sync_reservations (k text, p int, c text, st text, o text,
    e bigint, x int, fp text, f text, ca bigint, fin bigint, lc bool) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sync_lines (k text, p int, n int, l text, a int, s text,
    q bigint, bo bigint, ff bigint, he bool) ON COMMIT DELETE ROWS;
"""
_COPY_RESERVATIONS = "COPY sync_reservations FROM STDIN"
_COPY_LINES = "COPY sync_lines FROM STDIN"
# `reservation_id = ANY(ARRAY(...))` lets the delete use the primary key. The staging table has no
# statistics, nor has a young lines table: a plain IN (SELECT ...) was then planned as a scan of
# every line, every batch.
_WRITE = f"""
DELETE FROM reservation_lines
WHERE reservation_id = ANY(ARRAY(SELECT k FROM sync_reservations WHERE lc))
    AND (reservation_id, partition) IN (SELECT k, p FROM sync_reservations WHERE lc);
INSERT INTO reservations AS r (reservation_id, partition, customer_id, status, order_id,
    expires_at, extensions, fingerprint, fulfilments, created_at, finished_at, updated_at)
SELECT k, p, c, st, o, {ms("e")}, x, fp, f::jsonb, {ms("ca")}, {ms("fin")}, now()
FROM sync_reservations ORDER BY k, p
ON CONFLICT (reservation_id, partition) DO UPDATE SET customer_id = EXCLUDED.customer_id,
    status = EXCLUDED.status, order_id = EXCLUDED.order_id, expires_at = EXCLUDED.expires_at,
    extensions = EXCLUDED.extensions, fingerprint = EXCLUDED.fingerprint,
    fulfilments = EXCLUDED.fulfilments, created_at = EXCLUDED.created_at,
    finished_at = EXCLUDED.finished_at, updated_at = now();
INSERT INTO reservation_lines (reservation_id, partition, line_no, location, alloc_no, sku,
    quantity, backordered, fulfilled, hold_expired)
SELECT * FROM sync_lines;
"""


LINE_SHAPING = frozenset((events.RESERVED, events.FULFILLED, events.EXPIRED))


async def refresh(cur: AsyncCursor, fresh: list[Row]) -> None:
    """Rebuilds the reservation parts the batch's new rows (`fresh`) touch."""
    own: dict[tuple[str, int], list[LedgerRow]] = {}
    touched: dict[tuple[str, int], bool] = {}  # True: its new rows may change its lines
    for r in fresh:
        if r.type in RESERVATION_TYPES and r.reservation_id:
            key = (r.reservation_id, r.partition)
            if key in own:
                own[key].append(r)
                touched[key] = touched[key] or r.type in LINE_SHAPING
            else:
                own[key] = [r]
                touched[key] = r.type in LINE_SHAPING
    if not touched:
        return
    keys = sorted(touched)
    ids, parts = [k for k, _ in keys], [p for _, p in keys]
    await cur.execute(_LOCK, (ids, parts))
    # Binary results: the numbers arrive as numbers, not text psycopg has to parse.
    await cur.execute(_READ, (sorted(set(ids)), sorted(RESERVATION_TYPES)), binary=True)
    earlier: dict[tuple[str, int], list[LedgerRow]] = {}
    for rid, part, ms_, seq, *rest in await cur.fetchall():
        key = (rid, part)
        rows = own.get(key)
        if rows is None:
            continue  # the same id in another partition, not touched
        pos = (ms_, seq)
        # A row of this transaction seen all the same (written under a savepoint: another xmin).
        if all(r.pos != pos for r in rows):
            earlier.setdefault(key, []).append(ResEvent(pos, *rest))
    states = {
        key: s
        for key in keys
        if (s := rebuild(own[key] + earlier[key] if key in earlier else own[key])) is not None
    }
    if not states:
        return
    done = sorted(states)
    async with cur.copy(_COPY_RESERVATIONS) as copy:
        for key in done:
            await copy.write_row(_reservation_row(key, states[key], touched[key]))
    async with cur.copy(_COPY_LINES) as copy:
        for key in done:
            if not touched[key]:
                continue
            for row in _line_rows(key, states[key]):
                await copy.write_row(row)
    await cur.execute(_WRITE)


def _reservation_row(key: tuple[str, int], s: State, lines_change: bool) -> tuple[Any, ...]:
    fulfilments = orjson.dumps(s.fulfilments).decode()
    return (
        *key,
        s.customer_id,
        s.status,
        s.order_id,
        s.expires_ms,
        s.extensions,
        s.fingerprint or _likely_fingerprint(s),
        fulfilments,
        s.created_ms,
        s.finished_ms,
        lines_change,
    )


def _likely_fingerprint(s: State) -> str:
    """The events do not carry the request's fingerprint: this is the one reserve() stored if
    the cart named no location and lay in one partition (what storefronts send). Restore puts it
    back so a retried reserve replays; for any other cart a retry answers a conflict, never a
    second hold."""
    lines = [
        ReservationLine(
            line.sku, line.quantity, tuple(Allocation(a.location, a.quantity) for a in line.allocs)
        )
        for line in s.lines
    ]
    return request_fingerprint(s.customer_id, s.ttl_ms // 1000, lines)


def _line_rows(key: tuple[str, int], s: State) -> list[tuple[Any, ...]]:
    return [
        (
            *key,
            n,
            a.location,
            i,
            line.sku,
            a.quantity,
            a.backordered,
            a.fulfilled,
            line.hold_expired,
        )
        for n, line in enumerate(s.lines, start=1)
        for i, a in enumerate(line.allocs, start=1)
    ]
