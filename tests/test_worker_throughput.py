"""The worker's fast path: COPY staging, positional parsing, reading ahead, lines rewritten only
when they can change, and the `sync` bench."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from engine.streams import CONSUMER_GROUP, partition_lag
from engine.types import CartLine, FulfilLine
from flashsale.settings import Settings
from loadtests.bench import sync_design
from sync_worker import reservations_sql, writer
from sync_worker.db import libpq_url
from tests.worker_support import (
    Load,
    assert_consistent,
    running_worker,
    seed,
    start_engine,
    wait_synced,
)


def query(cfg: Settings, sql: str, *args: object) -> list[tuple[Any, ...]]:
    assert cfg.database_url
    with psycopg.connect(libpq_url(cfg.database_url)) as conn:
        return conn.execute(sql, args).fetchall()


def restock(**changes: str) -> dict[str, str]:
    event = {
        "type": "restocked",
        "sku": "apple",
        "location": "north",
        "d_on_hand": "5",
        "d_reserved": "0",
        "d_committed": "0",
        "on_hand": "205",
        "reserved": "0",
        "committed": "0",
        "available": "205",
        "reservation_id": "",
        "order_id": "",
        "customer_id": "",
        "reason": "restock",
        "reference": "",
        "backordered": "0",
        "expires_at": "",
        "data": "",
        "ts": "1700000000000",
    }
    event.update(changes)
    return event


async def test_text_copy_would_mangle_reaches_the_ledger_unchanged(cfg: Settings) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    # COPY's text format gives tab, newline, backslash and \N a meaning: none may leak through.
    reference = "po\t17\nline 2 \\ back \\N é ✓"
    data = '{"note": "tab\\there", "n": [1, 2]}'
    event = restock(reference=reference, data=data)
    await engine.redis.xadd(engine.keys.for_sku("apple").events, event)  # type: ignore[arg-type]
    async with running_worker(cfg):
        await wait_synced(engine.redis, engine.keys)
    rows = query(
        cfg,
        "SELECT reference, data, reason FROM inventory_transactions WHERE type = 'restocked'",
    )
    assert rows == [(reference, {"note": "tab\there", "n": [1, 2]}, "restock")]
    await engine.aclose()


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("d_on_hand", "5x", "d_on_hand is not an integer"),
        ("ts", "9" * 30, "ts out of range"),
        ("backordered", "", "backordered is not an integer"),
    ],
)
async def test_a_bad_number_is_poison_naming_its_field(
    cfg: Settings, field: str, value: str, why: str
) -> None:
    engine = await start_engine(cfg)
    await seed(engine)
    stream = engine.keys.for_sku("apple").events
    await engine.redis.xadd(stream, restock(**{field: value}))  # type: ignore[arg-type]
    async with running_worker(cfg):
        await wait_synced(engine.redis, engine.keys)
    ((error,),) = query(cfg, "SELECT error FROM sync_dead_letters")
    assert why in error
    assert query(cfg, "SELECT count(*) FROM inventory_transactions WHERE type = 'restocked'") == [
        (0,)
    ]
    await engine.aclose()


async def test_stopping_writes_what_was_read_ahead(cfg: Settings) -> None:
    cfg = cfg.model_copy(update={"worker_batch_size": 5})
    engine = await start_engine(cfg)
    await seed(engine)
    load = Load(engine)
    for _ in range(300):
        await load.step()
    async with running_worker(cfg, "ahead"):
        await asyncio.sleep(0.3)  # mid-backlog: a batch in hand and the next one read ahead
    streams = [p.events for p in engine.keys.all()]
    for stream in streams:
        pending = await engine.redis.xpending_range(stream, CONSUMER_GROUP, "-", "+", 100, "ahead")
        assert pending == []
    lag = await partition_lag(engine.redis, engine.keys)
    assert all(p.pending == 0 for p in lag)
    await engine.aclose()


async def test_the_sync_bench_drains_every_event_exactly_once_in_every_run(
    settings: Settings, redis_url: str, database_url: str
) -> None:
    result = await sync_design.measure(settings, redis_url, database_url, events=600)

    assert [(r.partitions, r.workers) for r in result.runs] == list(sync_design.RUNS)
    for run in result.runs:
        assert run.events >= 600
        assert run.ledger_rows == run.events, run
        assert run.events_per_s > 0
    assert {"reserved", "committed", "fulfilled", "released", "expired"} <= set(result.mix)


def lines_of(cfg: Settings, rid: str) -> list[tuple[Any, ...]]:
    return query(
        cfg,
        "SELECT line_no, sku, location, quantity, fulfilled, hold_expired FROM reservation_lines "
        "WHERE reservation_id = %s ORDER BY sku, location",
        rid,
    )


async def test_a_later_batch_rewrites_lines_only_when_its_rows_can_change_them(
    cfg: Settings,
) -> None:
    # Each step syncs on its own, so every change reaches the writer in a batch of its own:
    # the commit keeps the lines, the fulfilment rewrites them.
    engine = await start_engine(cfg)
    await seed(engine)
    async with running_worker(cfg):
        await engine.reserve("r-late", "c-1", [CartLine("apple", 2), CartLine("banana", 1)])
        await wait_synced(engine.redis, engine.keys)
        held = lines_of(cfg, "r-late")
        await engine.commit("r-late", "o-late")
        await wait_synced(engine.redis, engine.keys)
        committed = lines_of(cfg, "r-late")
        await engine.fulfil("r-late", [FulfilLine("apple", 2)])
        await wait_synced(engine.redis, engine.keys)
        fulfilled = lines_of(cfg, "r-late")
    assert [(sku, qty, done) for _, sku, _, qty, done, _ in held] == [
        ("apple", 2, 0),
        ("banana", 1, 0),
    ]
    assert committed == held
    assert [(sku, qty, done) for _, sku, _, qty, done, _ in fulfilled] == [
        ("apple", 2, 2),
        ("banana", 1, 0),
    ]
    # Two partitions: apple's part is fulfilled, banana's still committed.
    statuses = query(cfg, "SELECT status, order_id FROM reservations ORDER BY status")
    assert statuses in (
        [("committed", "o-late"), ("fulfilled", "o-late")],
        [("committed", "o-late")],  # one part: banana is not shipped yet
    )
    await assert_consistent(engine, cfg)
    await engine.aclose()


def test_rewriting_lines_reads_only_the_touched_reservations(cfg: Settings) -> None:
    # Neither the staging table nor a young lines table has statistics: a plain IN (SELECT …)
    # was planned as a scan of every line in the table, every batch.
    assert cfg.database_url
    with psycopg.connect(libpq_url(cfg.database_url)) as conn:
        conn.execute(
            "INSERT INTO reservation_lines (reservation_id, partition, line_no, location, "
            "alloc_no, sku, quantity) SELECT 'r' || n, 0, 1, 'north', 1, 'apple', 1 "
            "FROM generate_series(1, 5000) AS n"
        )
        conn.execute(writer.STAGING + reservations_sql.STAGING)
        conn.execute(
            "INSERT INTO sync_reservations (k, p, lc) SELECT 'r' || n, 0, true "
            "FROM generate_series(1, 900) AS n"  # what a batch of 2,000 events touches
        )
        delete = reservations_sql._WRITE.split(";")[0]
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN ANALYZE {delete}").fetchall())
        left = conn.execute("SELECT count(*) FROM reservation_lines").fetchone()
        conn.rollback()
    assert "Seq Scan on reservation_lines" not in plan, plan
    assert left == (5000 - 900,)
