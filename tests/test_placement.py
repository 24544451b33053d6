"""Placement groups: every SKU of one group lives in the group's partition, whatever its name
hashes to; the group is fixed when the SKU is created. On a single node and on a real cluster."""

from __future__ import annotations

import asyncio
import multiprocessing
import random

import orjson
import pytest

from engine import CartLine, ReservationEngine
from engine import errors as e
from engine.keys import KeySchema, partition_of, placement
from tests.conftest import RedisTarget
from tests.engine_support import check_invariants, make_engine, sku

PARTITIONS = 16
GROUP = "spring-drop"


def scattered(count: int, group: str = GROUP) -> list[str]:
    """SKU names whose own partitions all differ, and differ from the group's."""
    taken = {partition_of(group, PARTITIONS)}
    names = []
    for n in range(1000):
        name = f"item-{n}"
        if partition_of(name, PARTITIONS) not in taken:
            taken.add(partition_of(name, PARTITIONS))
            names.append(name)
        if len(names) == count:
            return names
    raise AssertionError("not enough names")


async def engine_on(target: RedisTarget) -> ReservationEngine:
    return await make_engine(target.url, cluster=target.cluster, partitions=PARTITIONS)


async def holders(engine: ReservationEngine, reservation_id: str) -> list[int]:
    """The partitions holding a part of the reservation."""
    return [
        part.number
        for part in engine.keys.all()
        if await engine.redis.exists(part.reservation(reservation_id))
    ]


async def test_the_skus_of_one_group_live_in_its_partition(redis_target: RedisTarget) -> None:
    engine = await engine_on(redis_target)
    names = scattered(4)
    home = engine.keys.placed("", GROUP)
    for name in names:
        assert await engine.configure_sku(name, sku(10, placement_group=GROUP))
    loner = scattered(5)[-1]
    await engine.configure_sku(loner, sku(10))  # no group: its own partition, as before
    for name in names:
        assert await engine.redis.exists(home.sku(name)) == 1
        assert await engine.redis.exists(engine.keys.for_sku(name).sku(name)) == 0
    assert await engine.redis.exists(engine.keys.for_sku(loner).sku(loner)) == 1
    members = {m.decode() for m in await engine.redis.smembers(home.skus)}
    assert members == set(names)
    assert await engine.redis.get(placement(names[0])) == GROUP.encode()
    assert await engine.redis.get(placement(loner)) == b""

    # Another process (an empty cache) finds them through the directory.
    other = await engine_on(redis_target)
    snap = await other.inventory(names[0])
    assert snap.config.placement_group == GROUP and snap.total.on_hand == 10
    assert (await other.inventory(loner)).config.placement_group is None
    await other.restock(names[1], "wh-1", 5)
    assert (await engine.inventory(names[1])).total.on_hand == 15

    # A cart over two SKUs of the group is one part, in one partition.
    cart = await other.reserve("cart", "ann", [CartLine(names[0], 2), CartLine(names[1], 3)])
    assert cart.status == "held"
    assert await holders(engine, "cart") == [home.number]
    await engine.commit("cart", "order-1")
    assert (await engine.inventory(names[0])).total.committed == 2
    await engine.fulfil("cart")
    # A cart mixing the group with a SKU outside it spans two partitions (and still works).
    await engine.reserve("mixed", "bob", [CartLine(names[2], 1), CartLine(loner, 1)])
    assert sorted(await holders(engine, "mixed")) == sorted(
        {home.number, engine.keys.for_sku(loner).number}
    )
    await engine.release("mixed")
    await check_invariants(engine, [*names, loner])
    await other.aclose()
    await engine.aclose()


async def test_the_sku_configured_event_carries_the_group(redis_target: RedisTarget) -> None:
    engine = await engine_on(redis_target)
    name = scattered(1)[0]
    await engine.configure_sku(name, sku(3, placement_group=GROUP))
    events = await engine.redis.xrange(engine.keys.placed(name, GROUP).events)
    configured = [
        f for _, f in events if f[b"type"] == b"sku_configured" and f[b"sku"] == name.encode()
    ]
    assert len(configured) == 1
    assert orjson.loads(configured[0][b"data"])["placement_group"] == GROUP
    await engine.aclose()


async def test_another_group_is_refused_and_changes_nothing(redis_target: RedisTarget) -> None:
    engine = await engine_on(redis_target)
    grouped, plain = scattered(2)
    await engine.configure_sku(grouped, sku(10, placement_group=GROUP))
    await engine.configure_sku(plain, sku(10))
    before = await engine.inventory(grouped)

    with pytest.raises(e.PlacementGroupFixed) as moved:
        await engine.configure_sku(grouped, sku(99, placement_group="autumn-drop"))
    assert moved.value.details == {
        "sku": grouped,
        "placement_group": GROUP,
        "requested": "autumn-drop",
    }
    assert str(moved.value) == (
        f"SKU {grouped} is in placement group {GROUP}, not placement group autumn-drop: "
        "a placement group is fixed when the SKU is created"
    )
    with pytest.raises(e.PlacementGroupFixed) as dropped:  # no group is another placement too
        await engine.configure_sku(grouped, sku(99))
    assert dropped.value.details == {"sku": grouped, "placement_group": GROUP}
    with pytest.raises(e.PlacementGroupFixed) as joined:
        await engine.configure_sku(plain, sku(99, placement_group=GROUP))
    assert joined.value.details == {"sku": plain, "requested": GROUP}
    # A fresh process (nothing cached) refuses the same way.
    other = await engine_on(redis_target)
    with pytest.raises(e.PlacementGroupFixed):
        await other.configure_sku(grouped, sku(99, placement_group="autumn-drop"))

    assert await engine.inventory(grouped) == before
    assert (await engine.inventory(plain)).total.on_hand == 10
    assert await engine.redis.get(placement(grouped)) == GROUP.encode()
    elsewhere = [p for p in engine.keys.all() if p.number != engine.keys.placed("", GROUP).number]
    for part in elsewhere:  # nothing was written in another partition
        assert await engine.redis.exists(part.sku(grouped)) == 0

    # The same group again is a plain reconfiguration.
    assert not await other.configure_sku(grouped, sku(25, placement_group=GROUP, purchase_limit=2))
    assert (await engine.inventory(grouped)).total.on_hand == 25
    await other.aclose()
    await engine.aclose()


async def test_a_sku_made_before_placement_groups_keeps_having_none(
    redis_target: RedisTarget,
) -> None:
    engine = await engine_on(redis_target)
    name = scattered(1)[0]
    await engine.configure_sku(name, sku(10))
    await engine.redis.delete(placement(name))  # as a SKU created by an older version
    other = await engine_on(redis_target)
    with pytest.raises(e.PlacementGroupFixed) as refused:
        await other.configure_sku(name, sku(10, placement_group=GROUP))
    assert refused.value.details == {"sku": name, "requested": GROUP}
    assert (await engine.inventory(name)).total.on_hand == 10
    await engine.redis.delete(placement(name))
    await other.aclose()
    other = await engine_on(redis_target)  # nothing cached
    assert not await other.configure_sku(name, sku(12))
    assert await engine.redis.get(placement(name)) == b""
    assert (await engine.inventory(name)).total.on_hand == 12

    # The first lookup of such a SKU writes its entry, so later ones cost no round trip.
    await engine.redis.delete(placement(name))
    third = await engine_on(redis_target)
    assert (await third.inventory(name)).total.on_hand == 12
    assert await engine.redis.get(placement(name)) == b""
    assert await third.placements.group(name) == ""
    # A SKU that does not exist gets no entry: it may yet be created, in any group.
    with pytest.raises(e.UnknownSku):
        await third.inventory("nowhere")
    assert await engine.redis.get(placement("nowhere")) is None
    for eng in (third, other, engine):
        await eng.aclose()


async def test_a_malformed_group_is_refused(redis_target: RedisTarget) -> None:
    engine = await engine_on(redis_target)
    with pytest.raises(e.InvalidRequest) as bad:
        await engine.configure_sku("s1", sku(1, placement_group="no spaces|here"))
    assert bad.value.field == "placement_group"
    assert await engine.redis.get(placement("s1")) is None
    await engine.aclose()


async def test_racing_first_configurations_agree_on_one_group(redis_target: RedisTarget) -> None:
    engines = [await engine_on(redis_target) for _ in range(4)]
    name = scattered(1)[0]
    groups = ["a-drop", "b-drop", None, "a-drop"]
    results = await asyncio.gather(
        *(
            eng.configure_sku(name, sku(5, placement_group=g))
            for eng, g in zip(engines, groups, strict=True)
        ),
        return_exceptions=True,
    )
    won = (await engines[0].inventory(name)).config.placement_group
    for group, result in zip(groups, results, strict=True):
        if group == won:
            assert isinstance(result, bool), result
        else:
            assert isinstance(result, e.PlacementGroupFixed), result
    assert sum(result is True for result in results) == 1  # created once
    homes = [p for p in engines[0].keys.all() if await engines[0].redis.exists(p.sku(name))]
    assert homes == [engines[0].keys.placed(name, won)]
    for eng in engines:
        await eng.aclose()


# ---- Racers on the last units of a group -----------------------------------------------------

PROCESSES = 3
CLIENTS_PER_PROCESS = 40
SUPPLY = 30  # per SKU
RACE_SKUS = 3


async def _buyers(target: RedisTarget, names: list[str], proc: int) -> dict[str, int]:
    engine = await engine_on(target)
    tally = {"committed": 0, "released": 0, "refused": 0}
    rng = random.Random(proc)

    async def client(n: int) -> None:
        misses = 0
        for attempt in range(200):
            if misses >= 10:
                return
            rid = f"p{proc}-c{n}-a{attempt}"
            lines = [CartLine(name, rng.choice((1, 2))) for name in rng.sample(names, 2)]
            try:
                await engine.reserve(rid, f"cust{proc}-{n}", lines, ttl_seconds=60)
            except e.InsufficientStock:
                misses += 1
                tally["refused"] += 1
                continue
            if rng.random() < 0.7:
                await engine.commit(rid, f"o-{rid}")
                tally["committed"] += 1
            else:
                await engine.release(rid)
                tally["released"] += 1

    await asyncio.gather(*(client(n) for n in range(CLIENTS_PER_PROCESS)))
    await engine.aclose()
    return tally


def _run_buyers(target: RedisTarget, names: list[str], proc: int) -> dict[str, int]:
    return asyncio.run(_buyers(target, names, proc))


@pytest.mark.slow
async def test_racers_on_a_group_never_oversell(redis_target: RedisTarget) -> None:
    engine = await engine_on(redis_target)
    names = scattered(RACE_SKUS)
    for name in names:
        await engine.configure_sku(name, sku(SUPPLY, placement_group=GROUP))
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with ctx.Pool(PROCESSES) as pool:
        results = [
            pool.apply_async(_run_buyers, (redis_target, names, proc)) for proc in range(PROCESSES)
        ]
        tallies = [await loop.run_in_executor(None, r.get, 180) for r in results]
    assert sum(t["committed"] for t in tallies) > 0 and sum(t["refused"] for t in tallies) > 0
    for name in names:
        total = (await engine.inventory(name)).total
        assert total.reserved == 0 and total.on_hand == SUPPLY
        assert 0 < total.committed <= SUPPLY and total.available == SUPPLY - total.committed
    # Every cart was one part, in the group's partition: no other partition saw a reservation.
    home = KeySchema(PARTITIONS).placed("", GROUP)
    for part in engine.keys.all():
        if part.number != home.number:
            assert await engine.redis.xlen(part.events) == 0
    await check_invariants(engine, names)
    await engine.aclose()


async def test_the_script_refuses_another_group_even_without_the_directory(
    redis_target: RedisTarget,
) -> None:
    """The directory decides; the SKU's own config is the second line should it be lost."""
    engine = await engine_on(redis_target)
    name = scattered(1)[0]
    await engine.configure_sku(name, sku(10, placement_group=GROUP))
    home = partition_of(GROUP, PARTITIONS)
    twin = next(
        g for n in range(1000) if partition_of(g := f"drop-{n}", PARTITIONS) == home
    )  # another group whose partition is the same
    await engine.redis.delete(placement(name))  # the directory entry is lost
    other = await engine_on(redis_target)
    with pytest.raises(e.PlacementGroupFixed) as refused:
        await other.configure_sku(name, sku(99, placement_group=twin))
    assert refused.value.details == {"sku": name, "placement_group": GROUP, "requested": twin}
    snap = await engine.inventory(name)
    assert snap.total.on_hand == 10 and snap.config.placement_group == GROUP
    await other.aclose()
    await engine.aclose()
