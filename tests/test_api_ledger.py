"""GET /v1/inventory/{sku}/transactions: the Postgres ledger, newest first, cursor pages.

Rows are written here with plain SQL into the worker's schema (its migrations), so these tests
pin the read side alone; tests/test_api_e2e.py runs the real worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest

from sync_worker.migrations import upgrade
from tests.api_harness import ADMIN, STOREFRONT, Api, api_settings, assert_problem, running_api

INSERT = """
    INSERT INTO inventory_transactions (partition, stream_id, type, sku, location, d_on_hand,
        d_reserved, d_committed, on_hand, reserved, committed, available, reservation_id,
        customer_id, backordered, occurred_at)
    VALUES (0, %s, %s, %s, %s, 0, %s, 0, 10, %s, 0, %s, %s, 'c1', 0, %s)
"""


def libpq(url: str) -> str:
    return url.replace("+psycopg", "", 1)


@pytest.fixture
async def api(redis_client: object, redis_url: str, pg_database_url: str) -> AsyncIterator[Api]:
    upgrade(pg_database_url)
    with psycopg.connect(libpq(pg_database_url), autocommit=True) as conn:
        for n in range(1, 6):  # five holds of one unit each, alternating locations
            location = "wh-1" if n % 2 else "wh-2"
            conn.execute(
                INSERT,
                (f"{n}-0", "reserved", "s1", location, 1, n, 10 - n, f"r{n}", datetime.now(UTC)),
            )
        conn.execute(INSERT, ("6-0", "reserved", "other", "wh-1", 1, 1, 9, "r6", datetime.now(UTC)))
    async with running_api(api_settings(redis_url, pg_database_url)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


async def test_the_ledger_pages_newest_first_by_cursor(api: Api) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await api.client.get(
            "/v1/inventory/s1/transactions", params=params, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["sku"] == "s1"
        seen += [row["reservation_id"] for row in page["transactions"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["r5", "r4", "r3", "r2", "r1"]  # only this SKU's rows, newest first
    assert pages == 3


async def test_a_ledger_row_has_the_deltas_and_the_quantities_after(api: Api) -> None:
    response = await api.client.get("/v1/inventory/s1/transactions?limit=1", headers=ADMIN)
    (row,) = response.json()["transactions"]
    assert (row["type"], row["location"], row["d_reserved"], row["reserved"]) == (
        "reserved",
        "wh-1",
        1,
        5,
    )
    assert row["stream_id"] == "5-0" and row["customer_id"] == "c1"
    assert row["occurred_at"] and row["recorded_at"]


async def test_the_ledger_filters_by_location(api: Api) -> None:
    response = await api.client.get(
        "/v1/inventory/s1/transactions", params={"location": "wh-2"}, headers=ADMIN
    )
    assert [row["reservation_id"] for row in response.json()["transactions"]] == ["r4", "r2"]


async def test_ledger_refusals(api: Api) -> None:
    url = "/v1/inventory/s1/transactions"
    assert_problem(await api.client.get(url, headers=STOREFRONT), 403, "forbidden")
    assert_problem(await api.client.get(url), 401)
    assert_problem(
        await api.client.get("/v1/inventory/nope/transactions", headers=ADMIN), 404, "unknown_sku"
    )
    for params in ({"limit": 0}, {"limit": 501}, {"cursor": 0}, {"cursor": "x"}):
        assert_problem(await api.client.get(url, params=params, headers=ADMIN), 422)


async def test_without_a_database_the_ledger_is_503(redis_client: object, redis_url: str) -> None:
    async with running_api(api_settings(redis_url, None)) as api:
        await api.put_sku("s1")
        response = await api.client.get("/v1/inventory/s1/transactions", headers=ADMIN)
        assert_problem(response, 503, "ledger_unavailable")
        assert (await api.reserve(1)).status_code == 201  # everything else still works


async def test_an_unreachable_or_unmigrated_database_is_503(
    redis_client: object, redis_url: str, pg_database_url: str
) -> None:
    for url, words in (
        ("postgresql://nobody@127.0.0.1:1/none", "unavailable"),
        (pg_database_url, "migrations"),
    ):
        async with running_api(api_settings(redis_url, url)) as api:
            await api.put_sku("s1")
            response = await api.client.get("/v1/inventory/s1/transactions", headers=ADMIN)
            body = assert_problem(response, 503, "ledger_unavailable")
            assert words in body["detail"]
