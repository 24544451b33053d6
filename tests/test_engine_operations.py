"""Each engine operation against a real Redis: answers, refusal codes with their details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from engine import CartLine, FulfilLine, ReservationEngine
from engine import errors as e
from flashsale.settings import Settings
from tests.conftest import RedisTarget
from tests.engine_support import check_invariants, make_engine, sku


@pytest.fixture
async def engine(redis_target: RedisTarget) -> AsyncIterator[ReservationEngine]:
    eng = await make_engine(redis_target.url, cluster=redis_target.cluster)
    yield eng
    await eng.aclose()


async def test_reserve_fills_locations_greedily_in_priority_order(engine: ReservationEngine):
    await engine.configure_sku("tee", sku({"a": 2, "b": 5}))
    res = await engine.reserve("r1", "c1", [CartLine("tee", 4)])
    (line,) = res.lines
    assert [(a.location, a.quantity, a.backordered) for a in line.allocations] == [
        ("a", 2, 0),
        ("b", 2, 0),
    ]
    assert res.status == "held"
    snap = await engine.inventory("tee")
    assert (snap.total.available, snap.total.reserved) == (3, 4)
    await check_invariants(engine, ["tee"])


async def test_high_stock_strategy_takes_the_fullest_location_first(engine: ReservationEngine):
    await engine.configure_sku(
        "tee", sku({"a": 2, "b": 5}, allocation_strategy="prioritize-high-stock")
    )
    res = await engine.reserve("r1", "c1", [CartLine("tee", 3)])
    assert [(a.location, a.quantity) for a in res.lines[0].allocations] == [("b", 3)]


async def test_backordered_units_are_reported_and_bounded(engine: ReservationEngine):
    await engine.configure_sku("tee", sku({"a": 1}, backorder_limit={"a": 2}))
    res = await engine.reserve("r1", "c1", [CartLine("tee", 3)])
    assert res.lines[0].allocations[0].backordered == 2
    assert (await engine.inventory("tee")).total.available == -2
    with pytest.raises(e.InsufficientStock) as info:
        await engine.reserve("r2", "c2", [CartLine("tee", 1)])
    assert info.value.details["available"] == 0


async def test_a_line_with_a_location_is_served_only_there(engine: ReservationEngine):
    await engine.configure_sku("tee", sku({"a": 5, "b": 1}))
    with pytest.raises(e.InsufficientStock) as info:
        await engine.reserve("r1", "c1", [CartLine("tee", 2, location="b")])
    assert info.value.details == {"sku": "tee", "location": "b", "requested": 2, "available": 1}
    res = await engine.reserve("r1", "c1", [CartLine("tee", 1, location="b")])
    assert res.lines[0].allocations[0].location == "b"
    with pytest.raises(e.UnknownLocation):
        await engine.reserve("r2", "c1", [CartLine("tee", 1, location="zz")])


async def test_a_cart_is_all_or_nothing(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5))
    await engine.configure_sku("cap", sku(1))
    with pytest.raises(e.InsufficientStock) as info:
        await engine.reserve("r1", "c1", [CartLine("tee", 2), CartLine("cap", 2)])
    assert info.value.details["sku"] == "cap"
    assert (await engine.inventory("tee")).total.reserved == 0
    await check_invariants(engine, ["tee", "cap"])


async def test_replay_returns_the_first_answer_and_a_different_request_conflicts(
    engine: ReservationEngine,
):
    await engine.configure_sku("tee", sku(5))
    first = await engine.reserve("r1", "c1", [CartLine("tee", 2)])
    again = await engine.reserve("r1", "c1", [CartLine("tee", 2)])
    assert again.replayed and again.lines == first.lines and again.expires_at == first.expires_at
    assert (await engine.inventory("tee")).total.reserved == 2
    with pytest.raises(e.IdempotencyConflict):
        await engine.reserve("r1", "c1", [CartLine("tee", 3)])


async def test_purchase_limit_counts_holds_and_commits(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(10, purchase_limit=3))
    await engine.reserve("r1", "c1", [CartLine("tee", 2)])
    await engine.commit("r1", "o1")
    with pytest.raises(e.PurchaseLimitExceeded) as info:
        await engine.reserve("r2", "c1", [CartLine("tee", 2)])
    assert info.value.details == {"sku": "tee", "limit": 3, "remaining": 1}
    await engine.reserve("r3", "c1", [CartLine("tee", 1)])
    await engine.release("r1")  # a cancelled order gives the allowance back
    await engine.reserve("r4", "c1", [CartLine("tee", 2)])
    await check_invariants(engine, ["tee"])


async def test_too_many_active_holds_is_refused(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(10, max_active_holds_per_customer=1))
    await engine.reserve("r1", "c1", [CartLine("tee", 1)])
    with pytest.raises(e.TooManyHolds) as info:
        await engine.reserve("r2", "c1", [CartLine("tee", 1)])
    assert info.value.details == {"sku": "tee", "limit": 1}


@pytest.mark.parametrize("quantity", [0, -1, 1001, 1.5, True])
async def test_invalid_quantities_are_refused(engine: ReservationEngine, quantity):
    await engine.configure_sku("tee", sku(5))
    with pytest.raises(e.InvalidQuantity) as info:
        await engine.reserve("r1", "c1", [CartLine("tee", quantity)])
    assert info.value.details["sku"] == "tee"


async def test_refusals_for_ttl_unknown_sku_and_bad_ids(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5))
    with pytest.raises(e.TtlOutOfRange) as ttl:
        await engine.reserve("r1", "c1", [CartLine("tee", 1)], ttl_seconds=99_999)
    assert ttl.value.details["max"] == 3600
    with pytest.raises(e.UnknownSku) as unknown:
        await engine.reserve("r1", "c1", [CartLine("nope", 1)])
    assert unknown.value.details == {"sku": "nope"}
    for bad in ("r 1", "r|1", "r1\n", "", "x" * 65):
        with pytest.raises(e.InvalidRequest):
            await engine.reserve(bad, "c1", [CartLine("tee", 1)])


async def test_sale_window_is_checked_against_redis_time(engine: ReservationEngine):
    now = datetime.now(UTC)
    await engine.configure_sku("tee", sku(5, sale_starts_at=now + timedelta(hours=1)))
    with pytest.raises(e.SaleNotStarted) as info:
        await engine.reserve("r1", "c1", [CartLine("tee", 1)])
    assert info.value.details["sku"] == "tee"
    engine.clock_offset_ms = 2 * 3600 * 1000
    await engine.reserve("r1", "c1", [CartLine("tee", 1)])
    await engine.configure_sku("cap", sku(5, sale_ends_at=now + timedelta(hours=1)))
    with pytest.raises(e.SaleEnded):
        await engine.reserve("r2", "c1", [CartLine("cap", 1)])


async def test_extend_up_to_the_limit(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5, max_extensions=1))
    res = await engine.reserve("r1", "c1", [CartLine("tee", 1)], ttl_seconds=60)
    longer = await engine.extend("r1", 600)
    assert longer.expires_at > res.expires_at and longer.extensions == 1
    with pytest.raises(e.ExtensionLimit) as info:
        await engine.extend("r1", 600)
    assert info.value.details == {"reservation_id": "r1", "limit": 1}


async def test_hold_expires_without_a_sweeper_and_commit_is_refused(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(1))
    await engine.reserve("r1", "c1", [CartLine("tee", 1)], ttl_seconds=5)
    with pytest.raises(e.InsufficientStock):
        await engine.reserve("r2", "c2", [CartLine("tee", 1)])
    engine.clock_offset_ms = 6000
    # Reads never count an expired hold, and the next buyer gets the unit back.
    assert (await engine.inventory("tee")).total.available == 1
    await engine.reserve("r2", "c2", [CartLine("tee", 1)])
    with pytest.raises(e.ReservationExpired):
        await engine.commit("r1", "o1")
    assert (await engine.get_reservation("r1")).status == "expired"
    await check_invariants(engine, ["tee"])


async def test_the_sweeper_reclaims_holds_nobody_touches(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(300))
    for i in range(250):  # more than one reclaim batch (100)
        await engine.reserve(f"r{i}", f"c{i}", [CartLine("tee", 1)], ttl_seconds=5)
    engine.clock_offset_ms = 6000
    assert await engine.sweep() == 250
    holds = await engine.redis.zcard(engine.keys.for_sku("tee").holds("tee"))
    assert holds == 0
    await check_invariants(engine, ["tee"])


async def test_commit_fulfil_and_release_move_units(engine: ReservationEngine):
    await engine.configure_sku("tee", sku({"a": 2, "b": 2}))
    await engine.reserve("r1", "c1", [CartLine("tee", 3)])
    res = await engine.commit("r1", "o1")
    assert res.status == "committed" and res.order_id == "o1"
    assert (await engine.commit("r1", "o1")).replayed
    with pytest.raises(e.IdempotencyConflict):
        await engine.commit("r1", "o2")
    part = await engine.fulfil("r1", [FulfilLine("tee", 1, location="b")], fulfilment_id="f1")
    assert part.status == "committed"
    assert (await engine.fulfil("r1", [FulfilLine("tee", 1, "b")], fulfilment_id="f1")).replayed
    with pytest.raises(e.OverFulfil) as over:
        await engine.fulfil("r1", [FulfilLine("tee", 3)])
    assert over.value.details["remaining"] == 2
    done = await engine.fulfil("r1")
    assert done.status == "fulfilled"
    snap = await engine.inventory("tee")
    assert (snap.total.on_hand, snap.total.committed, snap.total.available) == (1, 0, 1)
    assert (await engine.release("r1")).status == "fulfilled"  # idempotent, changes nothing
    assert await engine.release("never-made") is None
    await check_invariants(engine, ["tee"])


async def test_state_refusals(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(3))
    await engine.reserve("r1", "c1", [CartLine("tee", 1)])
    with pytest.raises(e.InvalidState) as info:
        await engine.fulfil("r1")
    assert info.value.details["status"] == "held"
    await engine.release("r1")
    with pytest.raises(e.InvalidState):
        await engine.commit("r1", "o1")
    with pytest.raises(e.ReservationNotFound):
        await engine.commit("ghost", "o1")


async def test_stock_changes_and_their_refusals(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(3))
    assert (await engine.restock("tee", "wh-1", 2, idempotency_key="po-1")).on_hand == 5
    assert (await engine.restock("tee", "wh-1", 2, idempotency_key="po-1")).on_hand == 5
    with pytest.raises(e.IdempotencyConflict) as conflict:
        await engine.restock("tee", "wh-1", 3, idempotency_key="po-1")
    assert conflict.value.details == {"idempotency_key": "po-1"}
    assert (await engine.adjust("tee", "wh-1", -1, reason="damaged")).on_hand == 4
    with pytest.raises(e.QuantityStale) as stale:
        await engine.set_on_hand("tee", "wh-1", 10, change_from_quantity=3)
    assert stale.value.details == {"sku": "tee", "location": "wh-1", "expected": 3, "current": 4}
    assert (await engine.set_on_hand("tee", "wh-1", 10, change_from_quantity=4)).on_hand == 10
    await engine.reserve("r1", "c1", [CartLine("tee", 2)])
    await engine.commit("r1", "o1")
    with pytest.raises(e.InvariantViolation):
        await engine.adjust("tee", "wh-1", -11, reason="shrinkage")
    with pytest.raises(e.InvalidRequest):
        await engine.adjust("tee", "wh-1", 1, reason="because")
    with pytest.raises(e.InvariantViolation):  # a location holding units cannot be removed
        await engine.configure_sku("tee", sku({"other": 1}))
    await check_invariants(engine, ["tee"])


async def test_threshold_events_fire_once_per_crossing(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5, low_stock_threshold=2))
    for i in range(5):
        await engine.reserve(f"r{i}", f"c{i}", [CartLine("tee", 1)])
    await engine.release("r0")
    await engine.release("r1")
    part = engine.keys.for_sku("tee")
    types = [f[b"type"].decode() for _, f in await engine.redis.xrange(part.events)]
    crossings = [t for t in types if t in ("low_stock", "out_of_stock", "back_in_stock")]
    assert crossings == ["low_stock", "out_of_stock", "back_in_stock"]


async def test_script_flush_mid_run_changes_nothing(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(5))
    await engine.reserve("r1", "c1", [CartLine("tee", 1)])
    await engine.redis.script_flush()
    await engine.reserve("r2", "c2", [CartLine("tee", 1)])
    await engine.redis.script_flush()
    assert await engine.sweep() == 0  # pipelines recover from NOSCRIPT too
    await engine.redis.script_flush()
    assert await engine.ready()
    assert (await engine.inventory("tee")).total.reserved == 2


async def test_cross_partition_cart_failure_leaves_no_hold(redis_target: RedisTarget):
    engine = await make_engine(redis_target.url, cluster=redis_target.cluster, partitions=8)
    try:
        names = [f"s{i}" for i in range(12)]
        parts = {engine.keys.for_sku(n).number for n in names}
        assert len(parts) > 2
        for n in names:
            await engine.configure_sku(n, sku(1))
        # The last partition in order refuses: everything taken before it must go back.
        last = max(names, key=lambda n: engine.keys.for_sku(n).number)
        await engine.reserve("blocker", "c0", [CartLine(last, 1)])
        with pytest.raises(e.InsufficientStock):
            await engine.reserve("cart", "c1", [CartLine(n, 1) for n in names])
        for n in names:
            expected = 1 if n == last else 0
            assert (await engine.inventory(n)).total.reserved == expected
        ok = await engine.reserve("cart2", "c2", [CartLine(n, 1) for n in names if n != last])
        assert len({engine.keys.for_sku(ln.sku).number for ln in ok.lines}) > 2
        assert (await engine.commit("cart2", "o2")).status == "committed"
        await check_invariants(engine, names)
    finally:
        await engine.aclose()


async def test_a_refused_cart_spanning_partitions_leaves_its_id_free_for_a_retry(
    redis_target: RedisTarget,
):
    # Once answered 201 "released" with a new hold left behind: the compensated part was
    # replayed by the retry while the other partition took a fresh hold.
    engine = await make_engine(redis_target.url, cluster=redis_target.cluster, partitions=8)
    try:
        names = sorted((f"s{i}" for i in range(12)), key=lambda n: engine.keys.for_sku(n).number)
        first, last = names[0], names[-1]
        assert engine.keys.for_sku(first).number < engine.keys.for_sku(last).number
        await engine.configure_sku(first, sku(5))
        await engine.configure_sku(last, sku(0))
        cart = [CartLine(first, 2), CartLine(last, 1)]
        with pytest.raises(e.InsufficientStock) as refused:
            await engine.reserve("cart", "c1", cart)
        assert refused.value.sku == last
        with pytest.raises(e.ReservationNotFound):
            await engine.get_reservation("cart")
        assert (await engine.inventory(first)).total.reserved == 0

        await engine.restock(last, "wh-1", 1)
        again = await engine.reserve("cart", "c1", cart)
        assert (again.status, again.replayed) == ("held", False)
        assert {ln.sku: ln.quantity for ln in again.lines} == {first: 2, last: 1}
        assert (await engine.inventory(first)).total.reserved == 2
        assert (await engine.inventory(last)).total.reserved == 1
        assert (await engine.reserve("cart", "c1", cart)).replayed
        await check_invariants(engine, [first, last])
    finally:
        await engine.aclose()


async def test_a_commit_refused_by_its_last_partition_gives_back_every_earlier_part(
    redis_target: RedisTarget,
):
    engine = await make_engine(redis_target.url, cluster=redis_target.cluster, partitions=8)
    try:
        names = [f"s{i}" for i in range(12)]
        for n in names:
            await engine.configure_sku(n, sku(1))
        await engine.reserve("cart", "c1", [CartLine(n, 1) for n in names])
        numbers = sorted({engine.keys.for_sku(n).number for n in names})
        assert len(numbers) > 2
        # The last part vanishes (as if its hold expired past retention) after two or more parts
        # before it committed: those must be released, not left committed.
        await engine.redis.delete(engine.keys.partition(numbers[-1]).reservation("cart"))
        with pytest.raises(e.ReservationNotFound):
            await engine.commit("cart", "o1")
        for n in names:
            if engine.keys.for_sku(n).number != numbers[-1]:  # its hold expires on its own
                total = (await engine.inventory(n)).total
                assert (total.reserved, total.committed) == (0, 0), n
    finally:
        await engine.aclose()


def test_from_settings_without_a_redis_url_is_a_configuration_error() -> None:
    with pytest.raises(e.ConfigurationError, match="redis_url is not set"):
        ReservationEngine.from_settings(Settings(redis_url=None, database_url=None))


@pytest.mark.parametrize("partitions", [1, 8])
async def test_an_earlier_incarnation_opens_nothing(redis_target: RedisTarget, partitions: int):
    # The id's current use is checked by the script that acts (and, for a cart spanning
    # partitions, by the record's change): no read-then-act window, no extra round trip.
    if redis_target.cluster:
        partitions = 16 if partitions > 1 else 1
    engine = await make_engine(
        redis_target.url, cluster=redis_target.cluster, partitions=partitions
    )
    try:
        names = [f"s{i}" for i in range(4)]
        for n in names:
            await engine.configure_sku(n, sku(5, max_extensions=2))
        cart = [CartLine(n, 1) for n in names]
        held = await engine.reserve("r1", "c1", cart)
        assert len({engine.keys.for_sku(n).number for n in names}) == min(partitions, 4) or (
            partitions == 1
        )
        for act in (
            lambda inc: engine.extend("r1", 60, incarnation=inc),
            lambda inc: engine.commit("r1", "o1", incarnation=inc),
            lambda inc: engine.release("r1", incarnation=inc),
            lambda inc: engine.fulfil("r1", incarnation=inc),
        ):
            with pytest.raises(e.IncarnationMismatch):
                await act("not-this-one")
        still = await engine.get_reservation("r1")
        assert (still.status, still.extensions) == ("held", 0)
        assert (await engine.extend("r1", 60, incarnation=held.incarnation)).extensions == 1
        done = await engine.commit("r1", "o1", incarnation=held.incarnation)
        assert done.status == "committed"
        assert (await engine.fulfil("r1", incarnation=held.incarnation)).status == "fulfilled"
        await check_invariants(engine, names)
    finally:
        await engine.aclose()
