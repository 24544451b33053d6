"""The sold-out fast path never hides a retry's first answer, whichever process gave it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine import CartLine, ReservationEngine
from engine import errors as e
from tests.api_harness import STOREFRONT, api_settings, assert_problem, running_api
from tests.engine_support import make_engine, sku

WINDOW = 10_000  # a window no slow machine outlasts: what is tested is the refusal, not the window


@pytest.fixture
async def engines(redis_client: Any, redis_url: str) -> AsyncIterator[list[ReservationEngine]]:
    """Two processes' engines (two API workers) on one Redis."""
    pair = [await make_engine(redis_url, sold_out_recheck_ms=WINDOW) for _ in range(2)]
    yield pair
    for engine in pair:
        await engine.aclose()


async def command_calls(engine: ReservationEngine, *names: str) -> int:
    stats = await engine.redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in names)


async def sold_out_in(engine: ReservationEngine, name: str) -> None:
    """Lets `engine` learn from Redis that `name` is sold out (its mark is then set)."""
    with pytest.raises(e.InsufficientStock) as refused:
        await engine.reserve("learner", "c-learner", [CartLine(name, 1)])
    assert refused.value.sold_out


async def test_a_retry_won_through_another_process_replays_there(
    engines: list[ReservationEngine],
) -> None:
    a, b = engines
    await a.configure_sku("hot", sku(1))
    cart = [CartLine("hot", 1)]
    first = await a.reserve("x-1", "buyer", cart)  # the answer that got lost on the way back
    await sold_out_in(b, "hot")
    retry = await b.reserve("x-1", "buyer", cart)
    assert (retry.status, retry.replayed) == ("held", True)
    assert retry.expires_at == first.expires_at
    # The id with another request is still the conflict Redis names, not "sold out".
    with pytest.raises(e.IdempotencyConflict):
        await b.reserve("x-1", "someone-else", cart)


async def test_the_api_fast_path_replays_a_retry_won_by_another_worker(
    redis_client: Any, redis_url: str
) -> None:
    settings = api_settings(redis_url, sold_out_recheck_ms=WINDOW)
    other = await make_engine(redis_url)
    try:
        async with running_api(settings) as api:
            await api.put_sku("s1", on_hand=1)
            await other.reserve("x-1", "c1", [CartLine("s1", 1)])  # the other worker's win
            assert_problem(await api.reserve(1, customer="c2"), 409, "insufficient_stock")
            retry = await api.reserve(1, customer="c1", key="x-1")
            assert retry.status_code == 200, retry.text
            assert retry.json()["status"] == "held"
            body = {"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 1}]}
            by_body = await api.client.post(
                "/v1/reservations", json={**body, "reservation_id": "x-1"}, headers=STOREFRONT
            )
            assert by_body.status_code == 200, by_body.text
            # A fresh key is still refused from memory.
            assert_problem(await api.reserve(1, key="x-2"), 409, "insufficient_stock")
    finally:
        await other.aclose()


async def test_refusals_share_one_existence_check_and_run_no_script(
    engines: list[ReservationEngine],
) -> None:
    a, _ = engines
    await a.configure_sku("hot", sku(1))
    await a.reserve("w1", "c1", [CartLine("hot", 1)])
    await sold_out_in(a, "hot")
    scripts = await command_calls(a, "evalsha", "eval")
    checks = await command_calls(a, "exists")
    refusals = [a.reserve(f"miss-{n}", "c2", [CartLine("hot", 1)]) for n in range(200)]
    results = await asyncio.gather(*refusals, return_exceptions=True)
    assert all(isinstance(r, e.InsufficientStock) for r in results), results
    assert await command_calls(a, "evalsha", "eval") == scripts
    # Batched: a handful of round trips for 200 refusals, none of them a script.
    assert 1 <= await command_calls(a, "exists") - checks <= 10
