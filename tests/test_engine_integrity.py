"""A reservation whose hold is gone moves no units again.

Redis TIME can go backwards (a failover to a node with a slower clock): a hold reclaimed at the
later time then belongs to a reservation whose deadline looks not yet passed. Commit, release and
extend must notice that the hold member is gone, answer that the reservation expired, and leave
`reserved` equal to the sum of the active holds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from engine import CartLine, ReservationEngine
from engine import errors as e
from tests.engine_support import check_invariants, make_engine, sku

MINUTE_MS = 60_000


@pytest.fixture
async def engine(redis_client: object, redis_url: str) -> AsyncIterator[ReservationEngine]:
    eng = await make_engine(redis_url)
    yield eng
    await eng.aclose()


async def _reclaimed_then_clock_back(engine: ReservationEngine, reservation_id: str) -> None:
    """Holds `reservation_id` (2 of "tee"), lets the sweeper reclaim it at a later clock, then
    moves the clock back so its deadline looks not yet passed."""
    await engine.reserve(reservation_id, "c1", [CartLine("tee", 2)], ttl_seconds=60)
    engine.clock_offset_ms = 2 * MINUTE_MS
    assert await engine.sweep() == 1
    engine.clock_offset_ms = 0
    level = (await engine.inventory("tee")).total
    assert (level.reserved, level.committed, level.available) == (0, 0, 5)


async def _assert_untouched(engine: ReservationEngine) -> None:
    level = (await engine.inventory("tee")).total
    assert (level.on_hand, level.reserved, level.committed, level.available) == (5, 0, 0, 5)
    assert level.on_hand == level.available + level.reserved + level.committed
    await check_invariants(engine, ["tee"])


async def test_commit_of_a_reclaimed_hold_answers_expired(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5))
    await _reclaimed_then_clock_back(engine, "r1")
    with pytest.raises(e.ReservationExpired):
        await engine.commit("r1", "o1")
    await _assert_untouched(engine)
    assert (await engine.get_reservation("r1")).status == "expired"
    with pytest.raises(e.ReservationExpired):  # and stays so on a retry
        await engine.commit("r1", "o1")
    await _assert_untouched(engine)


async def test_release_of_a_reclaimed_hold_moves_nothing(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5))
    await _reclaimed_then_clock_back(engine, "r1")
    cart = await engine.release("r1")
    assert cart is not None and cart.status == "expired"
    await _assert_untouched(engine)
    cart = await engine.release("r1")
    assert cart is not None and cart.status == "expired"
    await _assert_untouched(engine)


async def test_extend_of_a_reclaimed_hold_answers_expired(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5, max_extensions=3))
    await _reclaimed_then_clock_back(engine, "r1")
    with pytest.raises(e.ReservationExpired):
        await engine.extend("r1", 600)
    with pytest.raises(e.ReservationExpired):
        await engine.commit("r1", "o1")
    await _assert_untouched(engine)
    assert (await engine.get_reservation("r1")).status == "expired"


async def test_a_cart_with_one_sku_reclaimed_expires_whole(engine: ReservationEngine):
    # Lazy expiry reclaims per SKU: reading "tee" at the later clock takes its hold, "cap"'s stays.
    await engine.configure_sku("tee", sku(5))
    await engine.configure_sku("cap", sku(5))
    await engine.reserve("r1", "c1", [CartLine("tee", 2), CartLine("cap", 1)], ttl_seconds=60)
    engine.clock_offset_ms = 2 * MINUTE_MS
    await engine.inventory("tee")
    engine.clock_offset_ms = 0
    assert (await engine.inventory("cap")).total.reserved == 1
    with pytest.raises(e.ReservationExpired):
        await engine.commit("r1", "o1")
    for name in ("tee", "cap"):
        level = (await engine.inventory(name)).total
        assert (level.reserved, level.committed, level.available) == (0, 0, 5), name
    await check_invariants(engine, ["tee", "cap"])
    assert (await engine.get_reservation("r1")).status == "expired"


async def test_a_live_hold_still_commits_releases_and_extends(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5, max_extensions=1))
    await engine.reserve("r1", "c1", [CartLine("tee", 2)], ttl_seconds=60)
    assert (await engine.extend("r1", 120)).status == "held"
    assert (await engine.commit("r1", "o1")).status == "committed"
    await engine.reserve("r2", "c2", [CartLine("tee", 1)], ttl_seconds=60)
    cart = await engine.release("r2")
    assert cart is not None and cart.status == "released"
    level = (await engine.inventory("tee")).total
    assert (level.reserved, level.committed, level.available) == (0, 2, 3)
    await check_invariants(engine, ["tee"])


# ---- Racing: commit vs release vs expiry, on clocks that disagree -------------------------

UNITS = 40
ROUNDS = 3


async def test_commit_release_and_expiry_race_on_clocks_that_disagree(
    redis_client: object, redis_url: str
):
    """Buyers commit and an admin releases on today's clock while a sweeper on a clock two
    minutes ahead reclaims the same holds, one per call: every reservation ends once, and no unit
    is counted twice."""
    setup = await make_engine(redis_url)
    await setup.configure_sku("hot", sku(UNITS))
    buyers = [await make_engine(redis_url) for _ in range(4)]
    admin = await make_engine(redis_url)
    sweeper = await make_engine(redis_url, reclaim_batch=1)
    sweeper.clock_offset_ms = 2 * MINUTE_MS
    rng = random.Random(7)

    async def commit(engine: ReservationEngine, rid: str) -> None:
        await asyncio.sleep(rng.random() * 0.02)
        try:
            await engine.commit(rid, f"o-{rid}")
        except (e.ReservationExpired, e.InvalidState):
            pass

    async def release(rid: str) -> None:
        await asyncio.sleep(rng.random() * 0.02)
        await admin.release(rid)

    async def sweep(stop: asyncio.Event) -> None:
        await asyncio.sleep(rng.random() * 0.01)
        while not stop.is_set():
            await sweeper.sweep()
            await asyncio.sleep(0)

    statuses: dict[str, str] = {}
    for round_ in range(ROUNDS):
        level = (await setup.inventory("hot")).total
        rids = [f"r{round_}-{n}" for n in range(level.available)]  # the last units, 1 each
        for n, rid in enumerate(rids):
            await buyers[n % len(buyers)].reserve(rid, f"c{n}", [CartLine("hot", 1)], 60)
        stop = asyncio.Event()
        sweeping = asyncio.create_task(sweep(stop))
        racers = []
        for n, rid in enumerate(rids):
            racers.append(commit(buyers[n % len(buyers)], rid))
            racers.append(commit(buyers[(n + 1) % len(buyers)], rid))
            if n % 4 == 0:
                racers.append(release(rid))
        rng.shuffle(racers)
        await asyncio.gather(*racers)
        stop.set()
        await sweeping
        await sweeper.sweep()

        for rid in rids:
            statuses[rid] = (await setup.get_reservation(rid)).status
        assert set(statuses.values()) <= {"committed", "released", "expired"}, statuses
        committed = sum(1 for status in statuses.values() if status == "committed")
        level = (await setup.inventory("hot")).total
        assert (level.reserved, level.committed) == (0, committed)
        assert level.available == UNITS - committed
        assert level.on_hand == level.available + level.reserved + level.committed
        await check_invariants(setup, ["hot"])

    outcomes = set(statuses.values())
    assert outcomes == {"committed", "released", "expired"}, "the race had all three outcomes"
    for engine in (setup, *buyers, admin, sweeper):
        await engine.aclose()
