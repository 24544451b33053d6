"""`flashsale restore`: reads the image of Redis that Postgres keeps and hands it to the engine.

Postgres knows every SKU's configuration and on_hand, and every reservation part's state and
lines; engine/restore.py turns that into Redis keys. Run it after Redis lost its data and before
the sale reopens, then `flashsale reconcile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection

from engine.config import EngineSettings
from engine.connection import RedisClient, connect_url
from engine.fencing import fence_status
from engine.keys import KeySchema
from engine.restore import (
    OperationImage,
    ReservationImage,
    RestoreError,
    RestoreReport,
    SkuImage,
    restore,
)
from engine.scripts import Scripts
from engine.types import Allocation, ReservationLine
from sync_worker.db import columns, connect, epoch_ms

_SKUS = "SELECT sku, partition, config FROM skus WHERE config IS NOT NULL ORDER BY sku"
_LEVELS = "SELECT sku, location, on_hand, reserved, committed FROM inventory_levels"
_RESERVATIONS = f"""
SELECT reservation_id, partition, customer_id, status, order_id, {epoch_ms("expires_at")},
    extensions, fingerprint, fulfilments, {epoch_ms("created_at")}, {epoch_ms("finished_at")}
FROM reservations
WHERE status IN ('held', 'committed') OR finished_at > now() - %s * interval '1 millisecond'
"""
_LINES = """
SELECT l.reservation_id, l.partition, l.line_no, l.sku, l.location, l.quantity, l.backordered,
    l.fulfilled, l.hold_expired
FROM reservation_lines l JOIN reservations r USING (reservation_id, partition)
WHERE r.status IN ('held', 'committed') OR r.finished_at > now() - %s * interval '1 millisecond'
ORDER BY l.reservation_id, l.partition, l.line_no, l.alloc_no
"""
_TOPS = """
SELECT DISTINCT ON (partition) partition, stream_id FROM inventory_transactions
ORDER BY partition, split_part(stream_id, '-', 1)::bigint DESC,
    split_part(stream_id, '-', 2)::bigint DESC
"""
# The request each fulfilment id stood for, from its events (of this incarnation of the id).
_FULFILMENTS = """
SELECT DISTINCT t.reservation_id, t.partition, t.reference, t.data->>'req'
FROM inventory_transactions t JOIN reservations r USING (reservation_id, partition)
WHERE t.type = 'fulfilled' AND t.reference <> '' AND t.data ? 'req'
    AND t.occurred_at >= r.created_at
    AND (r.status IN ('held', 'committed') OR r.finished_at > now() - %s * interval '1 millisecond')
"""
# Idempotency records of stock operations still within their retention window; a key used twice
# (after its window) keeps its newest record.
_OPERATIONS = f"""
SELECT sku, data, {epoch_ms("occurred_at")} FROM inventory_transactions
WHERE type IN ('restocked', 'adjusted', 'on_hand_set') AND data ? 'key'
    AND occurred_at > now() - %s * interval '1 millisecond'
ORDER BY id
"""
# The incarnation each reservation part was created with (its tokens are bound to it).
_INCARNATIONS = """
SELECT DISTINCT t.reservation_id, t.partition, t.data->>'gen'
FROM inventory_transactions t JOIN reservations r USING (reservation_id, partition)
WHERE t.type = 'reserved' AND t.data ? 'gen' AND t.occurred_at >= r.created_at
    AND (r.status IN ('held', 'committed') OR r.finished_at > now() - %s * interval '1 millisecond')
"""
_DEAD = "SELECT count(*) FROM sync_dead_letters"
_VERIFIED = """
INSERT INTO sync_partitions AS s (partition, verified_run, verified_at)
SELECT p, run, now() FROM unnest(%s::int[], %s::text[]) AS u(p, run)
ON CONFLICT (partition) DO UPDATE SET verified_run = EXCLUDED.verified_run,
    verified_at = EXCLUDED.verified_at, fenced_at = NULL, fenced_reason = NULL
"""


@dataclass
class Image:
    skus: list[SkuImage]
    reservations: list[ReservationImage]
    stream_tops: dict[int, str]
    dead_letters: int
    operations: list[OperationImage]


async def load_image(conn: AsyncConnection, settings: EngineSettings) -> Image:
    retention_ms = settings.retention_seconds * 1000
    async with conn.cursor() as cur:
        await cur.execute(_LEVELS)
        levels: dict[str, dict[str, tuple[int, int, int]]] = {}
        for sku, loc, oh, rs, cm in await cur.fetchall():
            levels.setdefault(sku, {})[loc] = (oh, rs, cm)
        await cur.execute(_SKUS)
        skus = []
        schema = KeySchema(settings.partitions)
        for sku, partition, config in await cur.fetchall():
            # A SKU in a placement group lives in its group's partition.
            home = schema.placed(sku, config.get("placement_group")).number
            if home != partition:
                raise RestoreError(
                    f"SKU {sku} lives in partition {partition} in Postgres but would be in "
                    f"{home} with FLASHSALE_PARTITIONS="
                    f"{settings.partitions}: restore with the partition count it was sold with"
                )
            mine = levels.get(sku, {})
            skus.append(
                SkuImage(
                    sku,
                    config,
                    on_hand={loc: q[0] for loc, q in mine.items()},
                    reserved={loc: q[1] for loc, q in mine.items()},
                    committed={loc: q[2] for loc, q in mine.items()},
                )
            )
        await cur.execute(_LINES, (retention_ms,))
        lines = await cur.fetchall()
        await cur.execute(_FULFILMENTS, (retention_ms,))
        requests = await cur.fetchall()
        await cur.execute(_INCARNATIONS, (retention_ms,))
        incarnations = {(rid, part): gen for rid, part, gen in await cur.fetchall()}
        await cur.execute(_RESERVATIONS, (retention_ms,))
        reservations = _reservations(await cur.fetchall(), lines, requests, incarnations)
        await cur.execute(_OPERATIONS, (retention_ms,))
        operations = {
            (sku, data["key"]): OperationImage(data["key"], sku, data["fp"], data["answer"], ts)
            for sku, data, ts in await cur.fetchall()
        }
        await cur.execute(_TOPS)
        tops: dict[int, str] = dict(await cur.fetchall())
        await cur.execute(_DEAD)
        row = await cur.fetchone()
    return Image(skus, reservations, tops, int(row[0]) if row else 0, list(operations.values()))


async def restore_urls(
    settings: EngineSettings,
    redis_url: str,
    database_url: str,
    *,
    force: bool = False,
    partition: int | None = None,
) -> RestoreReport:
    """run_restore() on connections of its own to the two servers; what it wrote and warnings."""
    async with (
        connect_url(redis_url, cluster=settings.redis_cluster) as redis,
        await connect(database_url) as conn,
    ):
        report, _ = await run_restore(redis, conn, settings, force=force, partition=partition)
    return report


async def run_restore(
    redis: RedisClient,
    conn: AsyncConnection,
    settings: EngineSettings,
    *,
    force: bool,
    partition: int | None = None,
) -> tuple[RestoreReport, Image]:
    """Rebuilds Redis (or one partition of it) from Postgres, then records in Postgres that the
    partitions restored are verified on this Redis server: the sync worker writes their events
    again, and they sell again."""
    if partition is not None and not 0 <= partition < settings.partitions:
        raise RestoreError(
            f"partition {partition} does not exist: FLASHSALE_PARTITIONS={settings.partitions} "
            f"numbers them 0 to {settings.partitions - 1}"
        )
    image = await load_image(conn, settings)
    seconds, micros = await redis.time()
    report = await restore(
        redis,
        settings,
        image.skus,
        image.reservations,
        image.stream_tops,
        now_ms=int(seconds) * 1000 + int(micros) // 1000,
        force=force,
        operations=image.operations,
        partition=partition,
    )
    schema = KeySchema(settings.partitions)
    parts = schema.all() if partition is None else (schema.partition(partition),)
    fence = Scripts(redis)["fence"]
    runs = [(part.number, (await fence_status(fence, part)).run) for part in parts]
    async with conn.transaction():
        await conn.execute(_VERIFIED, columns(runs, 2))
    if image.dead_letters:
        report.warnings.append(
            f"{image.dead_letters} stream entries sit in sync_dead_letters: Postgres (and so the "
            "restored Redis) misses their changes"
        )
    return report, image


def _reservations(
    rows: list[Any],
    line_rows: list[Any],
    request_rows: list[Any],
    incarnations: dict[tuple[str, int], str],
) -> list[ReservationImage]:
    # (id, partition) -> line_no -> (sku, [allocations], hold expired)
    lines: dict[tuple[str, int], dict[int, tuple[str, list[Allocation], bool]]] = {}
    for rid, part, line_no, sku, loc, qty, bo, done, expired in line_rows:
        line = lines.setdefault((rid, part), {}).setdefault(line_no, (sku, [], expired))
        line[1].append(Allocation(loc, qty, bo, done))
    # (id, partition) -> fulfilment id -> the request, exactly as fulfil.lua compares it
    requests: dict[tuple[str, int], dict[str, str]] = {}
    for rid, part, fid, request in request_rows:
        requests.setdefault((rid, part), {})[fid] = request
    images = []
    for rid, part, cust, status, order, exp, ext, fp, fulfilments, created, finished in rows:
        mine = lines.get((rid, part), {})
        images.append(
            ReservationImage(
                id=rid,
                customer_id=cust,
                status=status,
                expires_at_ms=exp,
                created_at_ms=created,
                lines=tuple(
                    ReservationLine(sku, sum(a.quantity for a in allocs), tuple(allocs))
                    for sku, allocs, _ in (mine[n] for n in sorted(mine))
                ),
                order_id=order,
                extensions=ext,
                fingerprint=fp or "",
                # A fulfilment whose events predate the request in their data keeps what it
                # shipped: a retry then gets a conflict, never a second shipment.
                fulfilments={
                    **{k: orjson.dumps(v).decode() for k, v in fulfilments.items()},
                    **requests.get((rid, part), {}),
                },
                finished_at_ms=finished,
                expired_skus=frozenset(sku for sku, _, expired in mine.values() if expired),
                incarnation=incarnations.get((rid, part), ""),
            )
        )
    return images
