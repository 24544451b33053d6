"""Real racers on the last units of carts spanning partitions, with recovery racing them.

3 OS processes x 30 async clients reserve two-partition carts (a scarce SKU with a purchase
limit, plus a scarcer one) and commit, release or keep them; some send the same reserve twice at
once, as a client retrying a slow request does. Meanwhile a sweeper whose recovery bound is 20 ms
drives every cart that is in flight alongside its own process, and an admin releases carts
mid-checkout. Afterwards: the stock invariants hold, nothing was sold twice, no customer is over
the limit, and every cart's parts agree with its decision record.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import sys

import pytest

from engine import CartLine, ReservationEngine
from engine import errors as e
from engine.carts import TRANSIENT
from tests.conftest import RedisTarget
from tests.engine_support import check_invariants, make_engine, sku, skus_in_two_partitions

PROCESSES = 3
CLIENTS = 30
HOT_SUPPLY, SIDE_SUPPLY = 40, 25
LIMIT = 3
RECOVERY_S = 0.02
BUYERS_TIMEOUT_S = 120  # a run takes seconds; past this a buyer is stuck, not slow


def skus_for(partitions: int) -> tuple[str, str]:
    """ "hot" and a side SKU in another partition, so every cart spans two."""
    return skus_in_two_partitions("hot", partitions, "side")


def partitions_of(target: RedisTarget) -> int:
    return 16 if target.cluster else 4


async def _buyers(url: str, cluster: bool, proc: int) -> dict[str, int]:
    partitions = 16 if cluster else 4
    hot, side = skus_for(partitions)
    engine = await make_engine(
        url, cluster=cluster, partitions=partitions, cart_recovery_seconds=RECOVERY_S
    )
    tally = {"held": 0, "committed": 0, "released": 0, "refused": 0}
    rng = random.Random(proc)

    async def reserve(rid: str, customer: str, lines: list[CartLine]) -> bool:
        try:
            await engine.reserve(rid, customer, lines, ttl_seconds=60)
            return True
        except (e.InsufficientStock, e.PurchaseLimitExceeded):
            return False

    async def client(n: int) -> None:
        misses = 0
        for attempt in range(1_000):
            if misses >= 10:
                return
            rid = f"p{proc}-c{n}-a{attempt}"
            customer = f"cust{(proc * CLIENTS + n) % 40}"
            lines = [CartLine(hot, rng.choice((1, 2))), CartLine(side, 1)]
            if rng.random() < 0.3:  # the same request twice at once, as a retrying client
                got = await asyncio.gather(*(reserve(rid, customer, lines) for _ in range(2)))
            else:
                got = [await reserve(rid, customer, lines)]
            if not any(got):
                misses += 1
                tally["refused"] += 1
                continue
            roll = rng.random()
            try:
                if roll < 0.5:
                    await engine.commit(rid, f"o-{rid}")
                    tally["committed"] += 1
                elif roll < 0.75:
                    await engine.release(rid)
                    tally["released"] += 1
                else:
                    tally["held"] += 1
            except (e.InvalidState, e.ReservationExpired, e.ReservationNotFound):
                tally["released"] += 1  # the admin released it first

    clients = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
    _, stuck = await asyncio.wait(clients, timeout=BUYERS_TIMEOUT_S)
    if stuck:
        # Normally done in seconds: say where every task of this process waits before failing,
        # rather than leaving the pool (and the test) to hang until pytest's timeout.
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise AssertionError(
            f"process {proc}: {len(stuck)} buyers still busy after "
            f"{BUYERS_TIMEOUT_S} s (their stacks are on stderr)"
        )
    for task in clients:
        task.result()  # a buyer's failure fails the test
    await engine.aclose()
    return tally


def _run_buyers(url: str, cluster: bool, proc: int) -> dict[str, int]:
    return asyncio.run(_buyers(url, cluster, proc))


async def _sweep_and_release(engine: ReservationEngine, hot: str, stop: asyncio.Event) -> int:
    """A sweeper with an aggressive recovery bound, and an admin releasing carts mid-way."""
    released = 0
    rng = random.Random(7)
    while not stop.is_set():
        await engine.sweep()
        holds = await engine.redis.zrange(engine.keys.for_sku(hot).holds(hot), 0, 20)
        if holds and rng.random() < 0.2:
            rid = rng.choice(holds).decode().split("|")[0]
            released += await engine.release(rid) is not None
        await asyncio.sleep(0.01)
    return released


async def check_every_cart(engine: ReservationEngine, hot: str, side: str) -> int:
    """Each cart's parts agree with its record; a cart without a record has no part left."""
    home = min(engine.keys.for_sku(hot), engine.keys.for_sku(side), key=lambda p: p.number)
    carts = 0
    for part in (engine.keys.for_sku(hot), engine.keys.for_sku(side)):
        async for key in engine.redis.scan_iter(match=f"{part.tag}:res:*", count=500):
            rid = key.decode().split(":res:", 1)[1]
            record = await engine.redis.hgetall(home.cart(rid))
            state = record.get(b"st", b"").decode()
            assert state, f"{rid}: a part without a decision record"
            assert state not in TRANSIENT, (rid, state)
            replies = await engine._read_parts(rid)
            statuses = {r["st"] for r in replies.values() if not r.get("missing")}
            if state == "committed":
                assert statuses == {"committed"}, (rid, statuses)
            elif state == "held":
                assert statuses <= {"held", "expired"}, (rid, statuses)
            else:
                assert not statuses & {"held", "committed"}, (rid, state, statuses)
            carts += part == home
    return carts


@pytest.mark.slow
async def test_spanning_carts_race_on_the_last_units_with_recovery_driving_alongside(
    redis_target: RedisTarget,
) -> None:
    url, cluster = redis_target.url, redis_target.cluster
    partitions = partitions_of(redis_target)
    hot, side = skus_for(partitions)
    engine = await make_engine(
        url, cluster=cluster, partitions=partitions, cart_recovery_seconds=RECOVERY_S
    )
    try:
        await engine.configure_sku(hot, sku(HOT_SUPPLY, purchase_limit=LIMIT))
        await engine.configure_sku(side, sku(SIDE_SUPPLY))
        stop = asyncio.Event()
        admin = asyncio.create_task(_sweep_and_release(engine, hot, stop))
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(PROCESSES) as pool:
            results = [pool.apply_async(_run_buyers, (url, cluster, p)) for p in range(PROCESSES)]
            tallies = [
                await loop.run_in_executor(None, r.get, BUYERS_TIMEOUT_S + 60) for r in results
            ]
        stop.set()
        await admin
        await asyncio.sleep(RECOVERY_S * 2)
        await engine.sweep()  # whatever a racer left mid-way is finished now

        committed = sum(t["committed"] for t in tallies)
        assert committed > 0 and sum(t["refused"] for t in tallies) > 0, tallies
        hot_total = (await engine.inventory(hot)).total
        side_total = (await engine.inventory(side)).total
        assert hot_total.committed + hot_total.reserved <= HOT_SUPPLY
        assert side_total.committed + side_total.reserved <= SIDE_SUPPLY
        # Every cart takes exactly one side unit: the side SKU counts the carts still standing.
        assert side_total.committed + side_total.reserved > 0
        await check_invariants(engine, [hot, side])
        assert await check_every_cart(engine, hot, side) > 0
    finally:
        await engine.aclose()
