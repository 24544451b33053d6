"""Read-only views over every SKU: list them page by page, read many snapshots in one round trip.

SKUs live in one set per partition (`{p<N>}:skus`, added by configure_sku). A listing walks the
partitions in order with SSCAN; its cursor is (partition, scan cursor, offset). The offset lets a
page stop inside one SSCAN batch (a small set comes back whole, whatever COUNT says): the next
page repeats that SSCAN call and skips what was already returned. While no SKU is created, every
SKU is listed exactly once. SKUs created meanwhile shift the batches: a page may then repeat a
SKU, and, if the set outgrows its compact encoding mid-listing, miss one (list again to be sure).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.engine import ReservationEngine
from engine.errors import InvalidRequest, UnknownSku
from engine.replies import decode, snapshot_of
from engine.types import SkuSnapshot

CURSOR_PATTERN = r"^\d{1,6}\.\d{1,19}\.\d{1,9}$"  # partition.scan cursor.offset
_SCAN_COUNT = 200


@dataclass(frozen=True, slots=True)
class CatalogCursor:
    partition: int = 0
    scan: int = 0
    offset: int = 0

    def __str__(self) -> str:
        return f"{self.partition}.{self.scan}.{self.offset}"

    @classmethod
    def parse(cls, text: str) -> CatalogCursor:
        """The cursor a previous page returned; anything else is the caller's mistake."""
        if re.fullmatch(CURSOR_PATTERN, text) is None:
            raise InvalidRequest("cursor: not a cursor this listing returned", field="cursor")
        partition, scan, offset = text.split(".")
        return cls(int(partition), int(scan), int(offset))


async def list_skus(
    engine: ReservationEngine, cursor: CatalogCursor | None, limit: int
) -> tuple[list[str], CatalogCursor | None]:
    """Up to `limit` SKU names from `cursor` on, and the cursor of the rest (None at the end)."""
    at = cursor or CatalogCursor()
    found: list[str] = []
    if at.partition >= engine.keys.partitions:  # from a deployment with more partitions: done
        return found, None
    while len(found) < limit:
        part = engine.keys.partition(at.partition)
        next_scan, members = await engine.redis.sscan(part.skus, at.scan, count=_SCAN_COUNT)
        batch = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        taken = batch[at.offset : at.offset + limit - len(found)]
        found.extend(taken)
        if at.offset + len(taken) < len(batch):
            return found, CatalogCursor(at.partition, at.scan, at.offset + len(taken))
        if int(next_scan) != 0:
            at = CatalogCursor(at.partition, int(next_scan), 0)
        elif at.partition + 1 < engine.keys.partitions:
            at = CatalogCursor(at.partition + 1, 0, 0)
        else:
            return found, None
    return found, at


async def snapshots(engine: ReservationEngine, skus: list[str]) -> list[SkuSnapshot]:
    """The snapshot of each SKU, in one pipelined round trip; SKUs that do not exist are left out.

    Each is the same script call as ReservationEngine.inventory (it reclaims due holds first).
    """
    if not skus:
        return []
    async with engine.redis.pipeline(transaction=False) as pipe:
        for sku, part in zip(skus, await engine.placements.partitions(skus), strict=True):
            await engine.scripts["snapshot"](
                keys=[part.events, *part.sku_keys(sku)],
                args=[engine.clock_offset_ms, sku, engine.settings.reclaim_batch],
                client=pipe,
            )
        raws = await pipe.execute()
    found = []
    for sku, raw in zip(skus, raws, strict=True):
        try:
            found.append(snapshot_of(sku, decode(raw)))
        except UnknownSku:
            continue
    return found
