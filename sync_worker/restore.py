"""`flashsale restore`: reads the image of Redis that Postgres keeps and hands it to the engine.

Postgres knows every SKU's configuration and on_hand, and every reservation part's state and
lines; engine/restore.py turns that into Redis keys. Run it after Redis lost its data and before
the sale reopens, then `flashsale reconcile` (DESIGN §7.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection

from engine.config import EngineSettings
from engine.connection import RedisClient, connect_url
from engine.keys import partition_of
from engine.restore import ReservationImage, RestoreError, RestoreReport, SkuImage, restore
from engine.types import Allocation, ReservationLine
from sync_worker.db import connect, epoch_ms

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
_DEAD = "SELECT count(*) FROM sync_dead_letters"


@dataclass
class Image:
    skus: list[SkuImage]
    reservations: list[ReservationImage]
    stream_tops: dict[int, str]
    dead_letters: int


async def load_image(conn: AsyncConnection, settings: EngineSettings) -> Image:
    retention_ms = settings.retention_seconds * 1000
    async with conn.cursor() as cur:
        await cur.execute(_LEVELS)
        levels: dict[str, dict[str, tuple[int, int, int]]] = {}
        for sku, loc, oh, rs, cm in await cur.fetchall():
            levels.setdefault(sku, {})[loc] = (oh, rs, cm)
        await cur.execute(_SKUS)
        skus = []
        for sku, partition, config in await cur.fetchall():
            if partition_of(sku, settings.partitions) != partition:
                raise RestoreError(
                    f"SKU {sku} lives in partition {partition} in Postgres but would be in "
                    f"{partition_of(sku, settings.partitions)} with FLASHSALE_PARTITIONS="
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
        await cur.execute(_RESERVATIONS, (retention_ms,))
        reservations = _reservations(await cur.fetchall(), lines)
        await cur.execute(_TOPS)
        tops: dict[int, str] = dict(await cur.fetchall())
        await cur.execute(_DEAD)
        row = await cur.fetchone()
    return Image(skus, reservations, tops, int(row[0]) if row else 0)


async def restore_urls(
    settings: EngineSettings, redis_url: str, database_url: str, *, force: bool = False
) -> RestoreReport:
    """run_restore() on connections of its own to the two servers; what it wrote and warnings."""
    async with (
        connect_url(redis_url, cluster=settings.redis_cluster) as redis,
        await connect(database_url) as conn,
    ):
        report, _ = await run_restore(redis, conn, settings, force=force)
    return report


async def run_restore(
    redis: RedisClient, conn: AsyncConnection, settings: EngineSettings, *, force: bool
) -> tuple[RestoreReport, Image]:
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
    )
    if image.dead_letters:
        report.warnings.append(
            f"{image.dead_letters} stream entries sit in sync_dead_letters: Postgres (and so the "
            "restored Redis) misses their changes"
        )
    return report, image


def _reservations(rows: list[Any], line_rows: list[Any]) -> list[ReservationImage]:
    # (id, partition) -> line_no -> (sku, [allocations], hold expired)
    lines: dict[tuple[str, int], dict[int, tuple[str, list[Allocation], bool]]] = {}
    for rid, part, line_no, sku, loc, qty, bo, done, expired in line_rows:
        line = lines.setdefault((rid, part), {}).setdefault(line_no, (sku, [], expired))
        line[1].append(Allocation(loc, qty, bo, done))
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
                fulfilments={k: orjson.dumps(v).decode() for k, v in fulfilments.items()},
                finished_at_ms=finished,
                expired_skus=frozenset(sku for sku, _, expired in mine.values() if expired),
            )
        )
    return images
