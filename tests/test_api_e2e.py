"""End to end through HTTP with the sync worker running: a sale reaches the ledger.

reserve → commit → fulfil over the API; the worker drains the partition stream into Postgres;
/v1/inventory/{sku}/transactions shows each step, newest first, with the right deltas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from sync_worker.migrations import upgrade
from sync_worker.worker import SyncWorker
from tests.api_harness import ADMIN, Api, api_settings, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str, pg_database_url: str) -> AsyncIterator[Api]:
    upgrade(pg_database_url)
    settings = api_settings(redis_url, pg_database_url, worker_block_ms=50)
    client = redis.asyncio.Redis.from_url(redis_url)
    worker = SyncWorker(client, pg_database_url, settings, "e2e")
    task = asyncio.create_task(worker.run())
    try:
        async with running_api(settings) as api:
            yield api
    finally:
        worker.stop()
        await task
        await client.aclose()


async def ledger_until(api: Api, sku: str, last_type: str) -> list[dict[str, Any]]:
    """The SKU's ledger once its newest row is `last_type` (the worker runs on its own)."""
    deadline = time.monotonic() + 20
    while True:
        response = await api.client.get(
            f"/v1/inventory/{sku}/transactions", params={"limit": 500}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["transactions"]
        if rows and rows[0]["type"] == last_type:
            return rows
        assert time.monotonic() < deadline, f"the ledger never showed {last_type}: {rows}"
        await asyncio.sleep(0.05)


async def test_reserve_commit_fulfil_appear_in_the_ledger_with_their_deltas(api: Api) -> None:
    await api.put_sku("s1", on_hand=10)
    rid, headers = await api.held(3, customer="c9")
    commit = await api.client.post(
        f"/v1/reservations/{rid}/commit", json={"order_id": "o-77"}, headers=headers
    )
    assert commit.status_code == 200, commit.text
    fulfil = await api.client.post(f"/v1/reservations/{rid}/fulfil", headers=ADMIN)
    assert fulfil.status_code == 200, fulfil.text

    rows = await ledger_until(api, "s1", "fulfilled")
    line_rows = [row for row in rows if row["location"]]  # SKU-level rows have no location
    steps = [
        (row["type"], row["d_on_hand"], row["d_reserved"], row["d_committed"]) for row in line_rows
    ]
    assert steps[:3] == [
        ("fulfilled", -3, 0, -3),
        ("committed", 0, -3, 3),
        ("reserved", 0, 3, 0),
    ]
    assert ("on_hand_set", 10, 0, 0) in steps[3:]
    fulfilled, committed, reserved = line_rows[:3]
    assert {r["reservation_id"] for r in (fulfilled, committed, reserved)} == {rid}
    assert committed["order_id"] == fulfilled["order_id"] == "o-77"
    assert reserved["customer_id"] == "c9" and reserved["location"] == "wh-1"
    # The quantities after the last step agree with what Redis says now.
    assert (fulfilled["on_hand"], fulfilled["reserved"], fulfilled["committed"]) == (7, 0, 0)
    level = await api.level()
    assert (level["on_hand"], level["available"]) == (7, fulfilled["available"])
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids, reverse=True)  # newest first


async def test_readiness_sees_the_worker_keep_up(api: Api) -> None:
    await api.put_sku("s1", on_hand=10)
    await api.held(1)
    await ledger_until(api, "s1", "reserved")
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["worker"] == "ok"
