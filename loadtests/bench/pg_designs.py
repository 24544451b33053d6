"""pg-occ and pg-conditional: the two Postgres designs the guides recommend, on our own tables.

Both live in the schema `flashsale_bench` of the given database, recreated at every run, so the
application's own tables are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from psycopg_pool import AsyncConnectionPool

from loadtests.bench.workload import Attempt, Outcome, Workload

SCHEMA = "flashsale_bench"
POOL_SIZE = 20  # well under Postgres' default max_connections of 100
OCC_RETRIES = 3
OCC_BACKOFF_S = 0.05  # times the attempt number

DDL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.stock (
    sku text PRIMARY KEY,
    on_hand integer NOT NULL,
    reserved integer NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0
);
CREATE TABLE {SCHEMA}.ledger (
    id bigserial PRIMARY KEY,
    reservation_id text NOT NULL UNIQUE,
    sku text NOT NULL,
    customer_id text NOT NULL,
    quantity integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
"""

LEDGER = (
    f"INSERT INTO {SCHEMA}.ledger (reservation_id, sku, customer_id, quantity)"
    " VALUES (%s, %s, %s, 1)"
)


def libpq_url(url: str) -> str:
    """psycopg takes SQLAlchemy's `postgresql+psycopg://` only without the driver part."""
    return url.replace("+psycopg", "", 1)


@contextlib.asynccontextmanager
async def pg_pool(database_url: str, workload: Workload) -> AsyncIterator[AsyncConnectionPool]:
    pool = AsyncConnectionPool(
        libpq_url(database_url), min_size=POOL_SIZE, max_size=POOL_SIZE, open=False, timeout=120
    )
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            await conn.execute(DDL)
            await conn.execute(
                f"INSERT INTO {SCHEMA}.stock (sku, on_hand) VALUES (%s, %s)",
                (workload.sku, workload.units),
            )
        yield pool
    finally:
        await pool.close()


async def pg_levels(database_url: str, sku: str) -> tuple[int, int]:
    """(available, oversold) counted from the ledger, which is the truth for these designs."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        cur = await conn.execute(
            f"SELECT s.on_hand, s.reserved, (SELECT count(*) FROM {SCHEMA}.ledger l"
            f" WHERE l.sku = s.sku) FROM {SCHEMA}.stock s WHERE s.sku = %s",
            (sku,),
        )
        row = await cur.fetchone()
    assert row is not None
    on_hand, reserved, booked = (int(v) for v in row)
    return on_hand - reserved, max(0, reserved - on_hand, booked - on_hand)


@contextlib.asynccontextmanager
async def pg_occ(database_url: str, workload: Workload, run_id: str) -> AsyncIterator[Attempt]:
    """Read level and version, update where the version still matches; back off and retry."""
    async with pg_pool(database_url, workload) as pool:

        async def attempt(buyer: int, seq: int) -> Outcome:
            rid = f"{run_id}-occ-{buyer}-{seq}"
            for retry in range(OCC_RETRIES + 1):
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        f"SELECT on_hand - reserved, version FROM {SCHEMA}.stock WHERE sku = %s",
                        (workload.sku,),
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    available, version = row
                    if available < 1:
                        await conn.commit()
                        return Outcome.OUT
                    async with conn.transaction():
                        cur = await conn.execute(
                            f"UPDATE {SCHEMA}.stock SET reserved = reserved + 1,"
                            " version = version + 1 WHERE sku = %s AND version = %s",
                            (workload.sku, version),
                        )
                        if cur.rowcount == 1:
                            await conn.execute(LEDGER, (rid, workload.sku, f"b{buyer}"))
                            return Outcome.SOLD
                if retry < OCC_RETRIES:
                    # Back off outside the pool: a sleeping buyer must not hold a connection.
                    await asyncio.sleep(OCC_BACKOFF_S * (retry + 1))
            return Outcome.REFUSED  # lost every race while stock remained

        yield attempt


@contextlib.asynccontextmanager
async def pg_conditional(
    database_url: str, workload: Workload, run_id: str
) -> AsyncIterator[Attempt]:
    """One conditional UPDATE and a ledger row per transaction; the row lock serialises buyers."""
    async with pg_pool(database_url, workload) as pool:

        async def attempt(buyer: int, seq: int) -> Outcome:
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    f"UPDATE {SCHEMA}.stock SET reserved = reserved + 1"
                    " WHERE sku = %s AND on_hand - reserved >= 1",
                    (workload.sku,),
                )
                if cur.rowcount == 0:
                    return Outcome.OUT
                await conn.execute(
                    LEDGER, (f"{run_id}-pc-{buyer}-{seq}", workload.sku, f"b{buyer}")
                )
                return Outcome.SOLD

        yield attempt
