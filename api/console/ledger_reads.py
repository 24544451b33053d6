"""The console's reads of the Postgres ledger: expiries per second, threshold events, recent rows.

Best effort by design: the console shows "no ledger" instead of failing when Postgres is down,
not configured or not migrated yet. Every query walks an index (the primary key, or (sku, id)).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from api.ledger import Ledger

log = logging.getLogger("flashsale.api")

THRESHOLD_TYPES = ("low_stock", "out_of_stock", "back_in_stock")
BACKFILL_ROWS = 50_000  # how far back the first read of a poller looks, in ledger rows
_TIMEOUT_S = 2.0

_LAST_ID = "SELECT coalesce(max(id), 0) AS id FROM inventory_transactions"
_NEW_ROWS = """
    SELECT id, type, sku, reservation_id, floor(extract(epoch FROM occurred_at))::bigint AS t,
           occurred_at
    FROM inventory_transactions
    WHERE id > %(after)s AND type = ANY(%(types)s)
    ORDER BY id
    LIMIT %(limit)s
"""
_LAST_THRESHOLD = """
    SELECT DISTINCT ON (sku) sku, type, occurred_at
    FROM inventory_transactions
    WHERE sku = ANY(%(skus)s) AND type = ANY(%(types)s)
    ORDER BY sku, id DESC
"""
_SKU_ROWS = """
    SELECT id, type, location, d_on_hand, d_reserved, d_committed, on_hand, reserved, committed,
           available, reservation_id, order_id, customer_id, reason, backordered, occurred_at
    FROM inventory_transactions
    WHERE sku = %(sku)s AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s))
    ORDER BY id DESC
    LIMIT %(limit)s
"""


async def fetch(ledger: Ledger, sql: str, params: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows, or None when the ledger cannot answer now."""
    if ledger.pool is None:
        return None
    try:
        async with ledger.pool.connection(timeout=_TIMEOUT_S) as conn:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(sql, params)
                return await cur.fetchall()
    except (psycopg.Error, PoolTimeout) as exc:
        log.debug("console ledger read failed: %s", exc)
        return None


async def start_id(ledger: Ledger) -> int | None:
    rows = await fetch(ledger, _LAST_ID, {})
    return None if rows is None else max(0, int(rows[0]["id"]) - BACKFILL_ROWS)


async def new_rows(
    ledger: Ledger, after: int, types: tuple[str, ...], limit: int = 20_000
) -> list[dict[str, Any]] | None:
    return await fetch(ledger, _NEW_ROWS, {"after": after, "types": list(types), "limit": limit})


async def last_thresholds(ledger: Ledger, skus: list[str]) -> list[dict[str, Any]] | None:
    if not skus:
        return []
    return await fetch(ledger, _LAST_THRESHOLD, {"skus": skus, "types": list(THRESHOLD_TYPES)})


async def sku_rows(
    ledger: Ledger, sku: str, types: tuple[str, ...] | None, limit: int
) -> list[dict[str, Any]] | None:
    params = {"sku": sku, "types": None if types is None else list(types), "limit": limit}
    return await fetch(ledger, _SKU_ROWS, params)
