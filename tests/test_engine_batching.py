"""Natural batching and the sold-out fast path, against a real Redis.

Script calls are counted with Redis's own `INFO commandstats`, so "fewer round trips" and "no
round trip" are facts read from the server, not from our code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine import CartLine, ReservationEngine
from engine import errors as e
from engine.batching import Batcher
from engine.calls import ReserveRequest
from tests.engine_support import check_invariants, make_engine, sku


@pytest.fixture
async def engine(redis_client: Any, redis_url: str) -> AsyncIterator[ReservationEngine]:
    eng = await make_engine(redis_url)
    yield eng
    await eng.aclose()


async def script_calls(engine: ReservationEngine) -> int:
    stats = await engine.redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def outcome(coro: Any) -> Any:
    try:
        return await coro
    except e.EngineError as exc:
        return type(exc)


async def test_concurrent_reserves_share_script_calls_and_win_in_arrival_order(
    redis_client: Any, redis_url: str
):
    # One batch in flight: strict arrival order (with two, a later batch may overtake).
    engine = await make_engine(redis_url, reserve_batches_in_flight=1)
    await engine.configure_sku("hot", sku(30))
    before = await script_calls(engine)
    results = await asyncio.gather(
        *(outcome(engine.reserve(f"r{n}", f"c{n}", [CartLine("hot", 1)])) for n in range(200))
    )
    calls = await script_calls(engine) - before
    # The first went alone (an idle lane sends at once); the other 199 left in batches of at most
    # reserve_batch_max (64): 5 calls, not 200.
    assert calls == 1 + -(-199 // engine.settings.reserve_batch_max), calls
    won = [n for n, r in enumerate(results) if not isinstance(r, type)]
    assert won == list(range(30)), won  # applied in the order they arrived
    assert {r for r in results if isinstance(r, type)} == {e.InsufficientStock}
    await check_invariants(engine, ["hot"])
    await engine.aclose()


async def test_each_request_of_a_batch_succeeds_or_fails_alone(
    redis_client: Any, redis_url: str
) -> None:
    engine = await make_engine(redis_url, reserve_batches_in_flight=1)
    await engine.configure_sku("a", sku(5, purchase_limit=2))
    await engine.configure_sku("b", sku(1))
    await engine.configure_sku("o", sku(1))
    await engine.reserve("dup", "c0", [CartLine("a", 1)])
    carts = {
        "ok-1": ("c1", [CartLine("a", 2)]),
        "unknown": ("c2", [CartLine("nope", 1)]),
        "limit": ("c3", [CartLine("a", 3)]),
        "ok-2": ("c4", [CartLine("a", 1), CartLine("b", 1)]),
        "all-or-nothing": ("c5", [CartLine("a", 1), CartLine("b", 1)]),  # b is gone by now
        "dup": ("c0", [CartLine("a", 1)]),  # a replay: the stored answer
        "conflict": ("c9", [CartLine("a", 1)]),  # reuses ok-1's id with another request
    }
    ids = {"conflict": "ok-1"}
    before = await script_calls(engine)
    # The lane is idle, so the first call goes alone; every cart after it rides one batch.
    first = engine.reserve("opener", "c0", [CartLine("o", 1)])
    results = dict(
        zip(
            ["opener", *carts],
            await asyncio.gather(
                outcome(first),
                *(
                    outcome(engine.reserve(ids.get(name, name), customer, lines))
                    for name, (customer, lines) in carts.items()
                ),
            ),
            strict=True,
        )
    )
    assert await script_calls(engine) - before == 2  # the opener, then one batch
    assert results["ok-1"].status == "held" and results["ok-2"].status == "held"
    assert results["unknown"] is e.UnknownSku
    assert results["limit"] is e.PurchaseLimitExceeded
    assert results["all-or-nothing"] is e.InsufficientStock
    assert results["dup"].status == "held"
    assert results["conflict"] is e.IdempotencyConflict
    a = (await engine.inventory("a")).total
    assert a.reserved == 1 + 2 + 1  # dup, ok-1, ok-2; the refused carts took nothing
    assert (await engine.inventory("b")).total.reserved == 1
    await check_invariants(engine, ["a", "b", "o"])
    await engine.aclose()


async def test_a_caller_that_gives_up_before_its_batch_leaves_is_not_sent(engine):
    await engine.configure_sku("hot", sku(100))
    tasks = [
        asyncio.create_task(engine.reserve(f"r{n}", f"c{n}", [CartLine("hot", 1)]))
        for n in range(100)
    ]
    await asyncio.sleep(0)  # all 100 submitted; no batch has left yet
    tasks[-1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[-1], asyncio.CancelledError)
    assert (await engine.inventory("hot")).total.reserved == 99
    with pytest.raises(e.ReservationNotFound):
        await engine.get_reservation("r99")


async def test_a_failed_batch_fails_every_caller_and_the_lane_recovers():
    calls: list[int] = []
    down = True

    async def send(requests: list[ReserveRequest]) -> list[bytes]:
        calls.append(len(requests))
        await asyncio.sleep(0)
        if down:
            raise ConnectionError("redis went away")
        return [b"ok"] * len(requests)

    batcher = Batcher(send, max_batch=8)
    req = ReserveRequest("r", "c", 1000, "fp", [CartLine("s", 1)])
    first = await asyncio.gather(*(batcher.submit(req) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(x, ConnectionError) for x in first), first
    down = False
    assert await asyncio.gather(*(batcher.submit(req) for _ in range(3))) == [b"ok"] * 3
    assert calls == [1, 2, 1, 2]  # the idle lane's first call alone, then the rest together


async def test_sold_out_refusals_do_not_reach_redis(redis_client: Any, redis_url: str) -> None:
    # A window no slow machine outlasts: what is tested is the refusal, not the window.
    engine = await make_engine(redis_url, sold_out_recheck_ms=10_000)
    await engine.configure_sku("hot", sku(2))
    await engine.reserve("w1", "c1", [CartLine("hot", 2)])
    with pytest.raises(e.InsufficientStock):
        await engine.reserve("first-miss", "c2", [CartLine("hot", 1)])
    before = await script_calls(engine)
    for n in range(100):
        with pytest.raises(e.InsufficientStock) as refused:
            await engine.reserve(f"miss-{n}", "c2", [CartLine("hot", 1)])
    assert await script_calls(engine) == before
    assert refused.value.details == {"sku": "hot", "location": "", "requested": 1, "available": 0}
    # A replay of our own reservation still gets the stored answer, not a refusal.
    assert (await engine.reserve("w1", "c1", [CartLine("hot", 2)])).status == "held"
    await engine.aclose()


async def test_a_refusal_with_stock_left_elsewhere_sets_no_mark(engine):
    await engine.configure_sku("hot", sku({"wh-1": 1, "wh-2": 1}))
    await engine.reserve("w1", "c1", [CartLine("hot", 1, "wh-1")])
    with pytest.raises(e.InsufficientStock):
        await engine.reserve("m1", "c2", [CartLine("hot", 1, "wh-1")])
    assert (await engine.reserve("w2", "c2", [CartLine("hot", 1)])).status == "held"


async def test_own_release_and_restock_reoffer_at_once(engine):
    await engine.configure_sku("hot", sku(1))
    await engine.reserve("w1", "c1", [CartLine("hot", 1)])
    with pytest.raises(e.InsufficientStock):
        await engine.reserve("m1", "c2", [CartLine("hot", 1)])
    await engine.release("w1")
    assert (await engine.reserve("w2", "c2", [CartLine("hot", 1)])).status == "held"
    with pytest.raises(e.InsufficientStock):
        await engine.reserve("m2", "c3", [CartLine("hot", 1)])
    await engine.restock("hot", "wh-1", 1)
    assert (await engine.reserve("w3", "c3", [CartLine("hot", 1)])).status == "held"


async def test_a_unit_released_by_another_process_is_reoffered_after_the_window(
    engine, redis_url: str
):
    other = await make_engine(redis_url)
    try:
        await engine.configure_sku("hot", sku(1))
        await other.reserve("w1", "c1", [CartLine("hot", 1)])
        with pytest.raises(e.InsufficientStock):
            await engine.reserve("m1", "c2", [CartLine("hot", 1)])
        await other.release("w1")  # this engine cannot know
        await asyncio.sleep(engine.settings.sold_out_recheck_ms / 1000)
        assert (await engine.reserve("w2", "c2", [CartLine("hot", 1)])).status == "held"
    finally:
        await other.aclose()


async def test_the_fast_path_can_be_turned_off(redis_client: Any, redis_url: str):
    engine = await make_engine(redis_url, sold_out_recheck_ms=0)
    try:
        await engine.configure_sku("hot", sku(0))
        before = await script_calls(engine)
        for n in range(3):
            with pytest.raises(e.InsufficientStock):
                await engine.reserve(f"m{n}", "c", [CartLine("hot", 1)])
        assert await script_calls(engine) - before == 3
    finally:
        await engine.aclose()


async def test_after_the_window_one_call_rechecks_while_the_others_are_still_refused(
    redis_client: Any, redis_url: str
) -> None:
    engine = await make_engine(redis_url, sold_out_recheck_ms=200)
    other = await make_engine(redis_url)
    try:
        await engine.configure_sku("hot", sku(1))
        await engine.reserve("w1", "c1", [CartLine("hot", 1)])
        with pytest.raises(e.InsufficientStock):
            await engine.reserve("first-miss", "c2", [CartLine("hot", 1)])
        await asyncio.sleep(0.25)  # the window has passed
        before = await script_calls(engine)
        storm = [engine.reserve(f"m{n}", "c2", [CartLine("hot", 1)]) for n in range(300)]
        answers = await asyncio.gather(*storm, return_exceptions=True)
        assert all(isinstance(a, e.InsufficientStock) for a in answers)
        assert await script_calls(engine) - before == 1  # one recheck, not a batch per 64

        # A unit another process gives back is found by the next recheck, and then sold.
        await other.release("w1")
        for _ in range(100):
            try:
                held = await engine.reserve("w2", "c2", [CartLine("hot", 1)])
                break
            except e.InsufficientStock:
                await asyncio.sleep(0.02)
        assert held.status == "held"
    finally:
        await other.aclose()
        await engine.aclose()


async def test_the_recheck_survives_a_caller_that_asks_twice(
    redis_client: Any, redis_url: str
) -> None:
    # The API asks for the local refusal first (before its rate limiter), then reserves: the call
    # chosen to recheck must be let through both times, or the mark never lapses.
    engine = await make_engine(redis_url, sold_out_recheck_ms=100)
    other = await make_engine(redis_url)
    try:
        await engine.configure_sku("hot", sku(1))
        await other.reserve("w1", "c1", [CartLine("hot", 1)])
        with pytest.raises(e.InsufficientStock):
            await engine.reserve("first-miss", "c2", [CartLine("hot", 1)])
        await other.release("w1")  # this engine cannot know
        cart = [CartLine("hot", 1)]
        held = None
        for n in range(100):
            rid = f"try-{n}"
            if await engine.local_refusal(rid, "c2", cart) is None:
                try:
                    held = await engine.reserve(rid, "c2", cart)
                    break
                except e.InsufficientStock:
                    pass
            await asyncio.sleep(0.02)
        assert held is not None and held.status == "held"
    finally:
        await other.aclose()
        await engine.aclose()
