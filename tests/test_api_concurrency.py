"""Idempotent retries under concurrency, and the last units under a crowd, through HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api_harness import STOREFRONT, Api, api_settings, live_server, running_api

CART = {"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 3}], "ttl_seconds": 600}


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


async def test_twenty_identical_posts_at_once_make_one_hold(api: Api, redis_client) -> None:
    """Over real connections to uvicorn, all 20 sent before any answer is read."""
    headers = {**STOREFRONT, "Idempotency-Key": "retry-storm"}
    with live_server(api.ctx.settings) as base_url:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/reservations", json=CART, headers=headers) for _ in range(20))
            )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 300]
    assert {r.json()["id"] for r in responses} == {"retry-storm"}
    assert len({r.json()["reservation_token"] for r in responses}) == 1
    level = await api.level()
    assert (level["reserved"], level["available"]) == (3, 7)
    holds_key = api.ctx.engine.keys.for_sku("s1").holds("s1")
    assert await redis_client.zcard(holds_key) == 1


async def test_a_crowd_on_the_last_units_never_oversells(api: Api) -> None:
    responses = await asyncio.gather(
        *(api.reserve(1, customer=f"c{n}") for n in range(30))  # 30 buyers, 10 units
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 10 and statuses.count(409) == 20
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"insufficient_stock"}
    level = await api.level()
    assert (level["reserved"], level["available"]) == (10, 0)
