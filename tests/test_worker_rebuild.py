"""A batch's reservations are rebuilt from its own rows as parsed, not read back: whatever the
batches and the order two workers commit them in, the reservation rows equal a rebuild from
every ledger row."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
import pytest

from engine.engine import ReservationEngine
from engine.types import CartLine, FulfilLine
from flashsale.settings import Settings
from sync_worker import reservations_sql
from sync_worker.db import connect, epoch_ms, libpq_url
from sync_worker.entries import RESERVATION_TYPES, Entry, Row, parse
from sync_worker.reservations import ResEvent, rebuild
from sync_worker.writer import prepare, write_batch
from tests.worker_support import Load, seed, start_engine

_FIELDS = (
    "pos",
    "type",
    "sku",
    "location",
    "d_reserved",
    "d_committed",
    "order_id",
    "customer_id",
    "reference",
    "backordered",
    "data",
    "ts",
    "expires_ms",
)


async def sale(engine: ReservationEngine) -> None:
    """Every reservation event, in both partitions: holds (one beyond available: a backorder),
    extensions, commits, shipments with and without a fulfilment id, releases, expiries."""
    await seed(engine)
    await engine.reserve("r-ship", "c-1", [CartLine("apple", 2), CartLine("banana", 1)])
    await engine.extend("r-ship", 60)
    await engine.commit("r-ship", "o-ship")
    await engine.fulfil("r-ship", [FulfilLine("apple", 1)], fulfilment_id="box-1")
    await engine.fulfil("r-ship", fulfilment_id="box-2")
    # All apple can promise: south holds back 2 units and backorders up to 3.
    await engine.reserve("r-back", "c-2", [CartLine("apple", 299)])
    await engine.commit("r-back", "o-back")
    await engine.restock("apple", "south", 300)
    await engine.fulfil("r-back")
    await engine.reserve("r-drop", "c-3", [CartLine("cherry", 1)])
    await engine.release("r-drop")
    await engine.reserve("r-late", "c-4", [CartLine("damson", 2), CartLine("cherry", 1)], 1)
    load = Load(engine, seed_=11)
    for _ in range(150):
        await load.step()
    await asyncio.sleep(1.1)
    while await engine.sweep():
        pass


async def parsed_rows(engine: ReservationEngine) -> list[Row]:
    rows = []
    for part in engine.keys.all():
        for stream_id, fields in await engine.redis.xrange(part.events):
            flat = [x for pair in fields.items() for x in pair]
            rows.append(parse(Entry(part.number, stream_id.decode(), flat)))
    return rows


async def write(cfg: Settings, batches: list[list[Row]]) -> None:
    assert cfg.database_url
    conn = await connect(cfg.database_url)
    try:
        await prepare(conn)
        for batch in batches:
            await write_batch(conn, batch, [])
    finally:
        await conn.close()


def read_back(conn: psycopg.Connection[Any]) -> dict[tuple[int, tuple[int, int]], ResEvent]:
    """Every reservation row of the ledger, as the rebuild reads rows other workers wrote."""
    ids = [r for (r,) in conn.execute("SELECT DISTINCT reservation_id FROM inventory_transactions")]
    found = conn.execute(
        reservations_sql._READ, (ids, sorted(RESERVATION_TYPES)), binary=True
    ).fetchall()
    return {(part, (ms, seq)): ResEvent((ms, seq), *rest) for _, part, ms, seq, *rest in found}


async def test_a_parsed_row_equals_its_ledger_row_read_back(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    await sale(engine)
    rows = await parsed_rows(engine)
    await engine.aclose()
    # Fields the engine leaves empty or plain: COPY escapes, NULLIF and JSON must agree too.
    odd = next(r for r in rows if r.type == "fulfilled" and r.reference)
    fields = [x for pair in _entry_fields(odd).items() for x in pair]
    rows.append(parse(Entry(odd.partition, f"{odd.pos[0]}-{odd.pos[1] + 1000}", fields)))
    await write(cfg, [rows])

    assert cfg.database_url
    with psycopg.connect(libpq_url(cfg.database_url)) as conn:
        stored = read_back(conn)
    mine = [r for r in rows if r.type in RESERVATION_TYPES]
    assert {r.type for r in mine} == RESERVATION_TYPES
    assert any(r.backordered for r in mine)
    assert len(stored) == len(mine)
    for row in mine:
        as_parsed = {name: getattr(row, name) for name in _FIELDS}
        if row.type != "reserved":
            as_parsed["data"] = None  # the rebuild reads data on `reserved` rows only
        read = stored[(row.partition, row.pos)]
        assert as_parsed == {name: getattr(read, name) for name in _FIELDS}, row.stream_id


def _entry_fields(row: Row) -> dict[bytes, bytes]:
    """A fulfilment of `row`'s reservation whose text needs COPY escapes and whose order id
    is empty."""
    values = {
        "type": row.type,
        "sku": row.sku,
        "location": row.location,
        "d_on_hand": "0",
        "d_reserved": str(row.d_reserved),
        "d_committed": "0",
        "on_hand": str(row.on_hand),
        "reserved": str(row.reserved),
        "committed": str(row.committed),
        "available": "0",
        "reservation_id": row.reservation_id or "",
        "order_id": "",
        "customer_id": row.customer_id or "",
        "reason": "",
        "reference": "box\t7 \\ né",
        "backordered": "0",
        "expires_at": "",
        "data": '{"req": "a\\tb"}',
        "ts": str(row.ts + 1),
    }
    return {k.encode(): v.encode() for k, v in values.items()}


def _halves(rows: list[Row]) -> list[list[Row]]:
    return [rows[: len(rows) // 2], rows[len(rows) // 2 :]]


ORDERS: dict[str, Callable[[list[Row]], list[list[Row]]]] = {
    "one batch": lambda rows: [rows],
    "earlier half first": _halves,
    "later half first": lambda rows: _halves(rows)[::-1],
    "interleaved, odd rows first": lambda rows: [rows[1::2], rows[::2]],
    "a row per batch, newest first": lambda rows: [[r] for r in reversed(rows)],
    "twice, the second time redelivered": lambda rows: [*_halves(rows), rows],
}


@pytest.mark.parametrize("order", ORDERS)
async def test_reservations_equal_a_rebuild_from_the_whole_ledger(
    cfg: Settings, order: str
) -> None:
    engine = await start_engine(cfg)
    await sale(engine)
    rows = await parsed_rows(engine)
    await engine.aclose()

    await write(cfg, ORDERS[order](rows))

    assert cfg.database_url
    with psycopg.connect(libpq_url(cfg.database_url)) as conn:
        by_key: dict[tuple[str, int], list[ResEvent]] = {}
        ids = dict(
            conn.execute(
                "SELECT partition || ' ' || stream_id, reservation_id FROM inventory_transactions"
            ).fetchall()
        )
        for (part, pos), event in read_back(conn).items():
            rid = ids[f"{part} {pos[0]}-{pos[1]}"]
            by_key.setdefault((rid, part), []).append(event)
        stored, lines = stored_reservations(conn)
    expected, expected_lines = {}, []
    for key in sorted(by_key):
        state = rebuild(by_key[key])
        if state is None:
            continue
        row = reservations_sql._reservation_row(key, state, True)
        expected[key] = (*row[2:8], orjson.loads(row[8]), *row[9:11])
        expected_lines += reservations_sql._line_rows(key, state)
    assert len(expected) >= 20
    assert stored == expected
    assert lines == sorted(expected_lines)


def stored_reservations(
    conn: psycopg.Connection[Any],
) -> tuple[dict[tuple[str, int], tuple[Any, ...]], list[tuple[Any, ...]]]:
    found = conn.execute(
        f"""SELECT reservation_id, partition, customer_id, status, order_id,
            {epoch_ms("expires_at")}, extensions, fingerprint, fulfilments,
            {epoch_ms("created_at")}, {epoch_ms("finished_at")}
        FROM reservations"""
    ).fetchall()
    lines = conn.execute(
        """SELECT reservation_id, partition, line_no, location, alloc_no, sku, quantity,
            backordered, fulfilled, hold_expired
        FROM reservation_lines"""
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in found}, sorted(lines)
