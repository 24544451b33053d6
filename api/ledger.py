"""Read side of the Postgres ledger (`inventory_transactions`, written by the sync worker).

Plain SQL on a psycopg pool: the API depends on the engine only, not on the worker's models.
Pages run newest first; the cursor is the last id the client saw, so a page is an index range
scan however deep the client goes, and rows inserted meanwhile never shift later pages.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.problems import ApiProblem

log = logging.getLogger("flashsale.api")

_PAGE_SQL = """
    SELECT id, partition, stream_id, type, sku, location, d_on_hand, d_reserved, d_committed,
           on_hand, reserved, committed, available, reservation_id, order_id, customer_id,
           reason, reference, backordered, expires_at, data, occurred_at, recorded_at
    FROM inventory_transactions
    WHERE sku = %(sku)s
      AND (%(location)s::text IS NULL OR location = %(location)s)
      AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)
    ORDER BY id DESC
    LIMIT %(limit)s
"""
_CONNECT_TIMEOUT_S = 5
_PING_TIMEOUT_S = 1.0  # readiness probes give up after about a second
_STATEMENT_TIMEOUT_MS = 5_000  # a slow ledger must not pin API connections


class Ledger:
    def __init__(self, database_url: str | None) -> None:
        self.pool: AsyncConnectionPool | None = None
        if database_url:
            self.pool = AsyncConnectionPool(
                database_url.replace("+psycopg", "", 1),  # SQLAlchemy's URL form, for libpq
                min_size=0,  # connect on demand: a down database is not retried in a loop
                max_size=4,
                open=False,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": _CONNECT_TIMEOUT_S,
                    "options": f"-c statement_timeout={_STATEMENT_TIMEOUT_MS}",
                },
            )

    @property
    def configured(self) -> bool:
        return self.pool is not None

    async def open(self) -> None:
        if self.pool is not None:
            await self.pool.open(wait=False)  # Postgres down at startup must not stop the API

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def ping(self) -> bool:
        try:
            await self._fetch("SELECT 1 AS one", {}, timeout=_PING_TIMEOUT_S)
        except ApiProblem:
            return False
        return True

    async def page(
        self, sku: str, *, location: str | None, cursor: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to `limit` rows older than `cursor`, and the cursor of the next page (or None)."""
        params = {"sku": sku, "location": location, "cursor": cursor, "limit": limit + 1}
        rows = await self._fetch(_PAGE_SQL, params)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (int(rows[-1]["id"]) if more else None)

    async def _fetch(
        self, sql: str, params: dict[str, Any], timeout: float = _CONNECT_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        if self.pool is None:
            raise ApiProblem(
                503, "ledger_unavailable", "no database is configured (FLASHSALE_DATABASE_URL)"
            )
        try:
            async with self.pool.connection(timeout=timeout) as conn:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(sql, params)
                    return await cur.fetchall()
        except psycopg.errors.UndefinedTable:
            raise ApiProblem(
                503, "ledger_unavailable", "the ledger table does not exist yet (run migrations)"
            ) from None
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("ledger read failed: %s", exc)
            raise ApiProblem(
                503,
                "ledger_unavailable",
                "the ledger database is unavailable",
                headers={"Retry-After": "5"},
            ) from None
