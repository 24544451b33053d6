"""The worker's fast path: COPY staging, positional parsing, reading ahead, and the `sync` bench."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from engine.streams import CONSUMER_GROUP, partition_lag
from flashsale.settings import Settings
from loadtests.bench import sync_design
from sync_worker.db import libpq_url
from tests.worker_support import Load, running_worker, seed, start_engine, wait_synced


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
