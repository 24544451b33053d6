"""A cart spanning partitions survives the death of the process driving it, at every step.

Each case runs one operation in a separate process (tests/cart_driver.py) that dies with
os._exit at one named fault point, then lets the sweeper's recovery finish what it left, and
checks: the decision record rests in a final or resting state; every part agrees with it (held
everywhere, committed everywhere, or nothing held or committed anywhere); no unit is counted
twice (the stock invariants against the holds and the event stream); the purchase-limit counters
equal what the customer holds plus what they bought; a retry of the operation gets the answer the
record gives; and Postgres, fed by the sync worker, agrees with Redis.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine import CartLine, ReservationEngine
from engine import errors as e
from engine.calls import ReservationPart, extend_call
from engine.carts import FAULT_POINTS, TRANSIENT
from engine.connection import connect_url
from flashsale.settings import Settings
from sync_worker import migrations
from sync_worker.db import connect
from sync_worker.reconcile import reconcile
from sync_worker.worker import SyncWorker
from tests.conftest import RedisTarget
from tests.engine_support import check_invariants, make_engine, sku
from tests.worker_support import wait_synced

DRIVER = Path(__file__).with_name("cart_driver.py")
REPO = DRIVER.parents[1]
DIED = 17
RECOVERY_S = 0.2
CUSTOMER = "buyer-1"
RID = "cart-1"


@dataclass(frozen=True)
class Scenario:
    """One operation on a two-partition cart, the fault points it passes, and where recovery
    must leave the cart."""

    name: str
    op: str
    points: tuple[str, ...]
    settles_as: str  # the record's state after recovery
    second_on_hand: int = 5
    setup: str = ""  # "reserved", "committed", or "second part expires first"
    clock_offset_ms: int = 0


RELEASE_POINTS = ("release:part:0", "release:part:1", "release:decided")
SCENARIOS = (
    Scenario(
        "reserve",
        "reserve",
        ("reserve:begun", "reserve:part:0", "reserve:part:1", "reserve:decided"),
        "held",
    ),
    Scenario(
        "reserve refused by the second partition",
        "reserve",
        ("back-out:releasing", *RELEASE_POINTS),
        "aborted",
        second_on_hand=0,
    ),
    Scenario(
        "commit",
        "commit",
        ("commit:committing", "commit:part:0", "commit:part:1", "commit:decided"),
        "committed",
        setup="reserved",
    ),
    Scenario(
        "commit finding the second part expired",
        "commit",
        ("commit:committing", "commit:part:0", "back-out:releasing", *RELEASE_POINTS),
        "expired",
        setup="second part expires first",
        clock_offset_ms=120_000,
    ),
    Scenario(
        "release a held cart",
        "release",
        ("release:releasing", *RELEASE_POINTS),
        "released",
        setup="reserved",
    ),
    Scenario(
        "release a committed cart",
        "release",
        ("release:releasing", *RELEASE_POINTS),
        "released",
        setup="committed",
    ),
)
CASES = [
    pytest.param(scenario, point, id=f"{scenario.name} / dies at {point}")
    for scenario in SCENARIOS
    for point in scenario.points
]


def test_every_named_fault_point_is_exercised() -> None:
    named = {p.replace("<i>", str(i)) for p in FAULT_POINTS for i in (0, 1)}
    exercised = {point for scenario in SCENARIOS for point in scenario.points}
    assert exercised <= named
    # Every kind of point (with its part index folded) is covered by some scenario.
    kinds = {p.rsplit(":", 1)[0] if p[-1].isdigit() else p for p in exercised}
    assert kinds == {p.replace(":<i>", "") for p in FAULT_POINTS}


def two_partition_skus(partitions: int) -> tuple[str, str]:
    """Two SKU names whose partitions differ, the first lower (its part comes first)."""
    from engine.keys import partition_of

    names = [f"sku-{i}" for i in range(200)]
    first = names[0]
    for other in names[1:]:
        if partition_of(other, partitions) > partition_of(first, partitions):
            return first, other
    raise AssertionError("no two partitions")


def run_driver(target: RedisTarget, engine: ReservationEngine, spec: dict[str, object]) -> int:
    spec = {
        "url": target.url,
        "cluster": target.cluster,
        "partitions": engine.settings.partitions,
        "cart_recovery_seconds": engine.settings.cart_recovery_seconds,
        "reservation_id": RID,
        "customer_id": CUSTOMER,
        "ttl_seconds": 60,
        "order_id": "order-1",
        **spec,
    }
    done = subprocess.run(
        [sys.executable, str(DRIVER), json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    return done.returncode if done.returncode != 0 else -done.stderr.count(b"refused")


async def setup_cart(engine: ReservationEngine, scenario: Scenario, a: str, b: str) -> None:
    if not scenario.setup:
        return
    await engine.reserve(RID, CUSTOMER, [CartLine(a, 2), CartLine(b, 1)], ttl_seconds=60)
    if scenario.setup == "committed":
        await engine.commit(RID, "order-1")
    if scenario.setup == "second part expires first":
        # The first part gets a longer deadline than the second: the commit then finds the first
        # part committable and the second expired, so it must back out the first.
        first = ReservationPart(engine.keys.for_sku(a).number, (a,))
        await engine._on_part(
            "extend", RID, first, lambda p: extend_call(p, RID, 600, engine.settings, 0)
        )


async def retry(engine: ReservationEngine, scenario: Scenario, a: str, b: str) -> None:
    """The client's retry of what it never got an answer to, answered from the record."""
    if scenario.op == "reserve":
        lines = [CartLine(a, 2), CartLine(b, 1)]
        if scenario.settles_as == "aborted":
            with pytest.raises(e.InsufficientStock) as refused:
                await engine.reserve(RID, CUSTOMER, lines, ttl_seconds=60)
            assert refused.value.sku == b
        else:
            reservation = await engine.reserve(RID, CUSTOMER, lines, ttl_seconds=60)
            assert reservation.status == "held" and reservation.replayed
    elif scenario.op == "commit":
        if scenario.settles_as == "expired":
            with pytest.raises(e.ReservationExpired):
                await engine.commit(RID, "order-1")
        else:
            assert (await engine.commit(RID, "order-1")).status == "committed"
    else:
        released = await engine.release(RID)
        assert released is not None and released.status == "released"


async def check_cart(engine: ReservationEngine, settles_as: str, skus: tuple[str, str]) -> None:
    home = engine.keys.partition(min(engine.keys.for_sku(s).number for s in skus))
    state = (await engine.redis.hget(home.cart(RID), "st") or b"").decode()
    if settles_as == "aborted":  # a refused cart leaves nothing: its id is free again
        assert state == "" and await engine._read_parts(RID) == {}
    else:
        assert state == settles_as and state not in TRANSIENT
    parts = await engine._read_parts(RID)
    statuses = {
        n: ("expired" if r["st"] == "held" and int(r["exp"]) <= int(r["now"]) else r["st"])
        for n, r in parts.items()
        if not r.get("missing")
    }
    totals = {s: (await engine.inventory(s)).total for s in skus}
    if settles_as in ("held", "committed"):
        assert len(statuses) == 2 and set(statuses.values()) == {settles_as}, statuses
    else:
        assert "held" not in statuses.values() and "committed" not in statuses.values()
        for s, total in totals.items():
            assert (total.reserved, total.committed) == (0, 0), (s, total)
    await check_invariants(engine, list(skus))
    for s in skus:  # the purchase-limit counter is exactly held + bought
        part = engine.keys.for_sku(s)
        units = int(await engine.redis.hget(part.customers(s), f"u:{CUSTOMER}") or 0)
        assert units == totals[s].reserved + totals[s].committed, (s, units, totals[s])


async def postgres_agrees(target: RedisTarget, engine: ReservationEngine, db_url: str) -> None:
    settings = Settings(
        redis_url=target.url,
        database_url=db_url,
        redis_cluster=target.cluster,
        partitions=engine.settings.partitions,
        worker_block_ms=50,
    )
    await asyncio.to_thread(migrations.upgrade, db_url)
    client = connect_url(target.url, cluster=target.cluster)
    worker = SyncWorker(client, db_url, settings, "fault-test")
    task = asyncio.create_task(worker.run())
    try:
        await wait_synced(engine.redis, engine.keys)  # type: ignore[arg-type]
    finally:
        worker.stop()
        await task
        await client.aclose()
    async with await connect(db_url) as conn:
        result = await reconcile(engine.redis, conn, engine.keys, deep=True)
    assert result.drifts == [], result.drifts[:5]


@pytest.mark.parametrize(("scenario", "point"), CASES)
async def test_a_driver_killed_at_a_fault_point_leaves_nothing_half_done(
    redis_target: RedisTarget, pg_database_url: str, scenario: Scenario, point: str
) -> None:
    partitions = 16 if redis_target.cluster else 4
    engine = await make_engine(
        redis_target.url,
        cluster=redis_target.cluster,
        partitions=partitions,
        cart_recovery_seconds=RECOVERY_S,
    )
    try:
        a, b = two_partition_skus(partitions)
        await engine.configure_sku(a, sku(5, purchase_limit=4, max_extensions=1))
        await engine.configure_sku(b, sku(scenario.second_on_hand, purchase_limit=4))
        await setup_cart(engine, scenario, a, b)

        status = await asyncio.to_thread(
            run_driver,
            redis_target,
            engine,
            {
                "op": scenario.op,
                "point": point,
                "lines": [[a, 2], [b, 1]],
                "clock_offset_ms": scenario.clock_offset_ms,
            },
        )
        assert status == DIED, f"the driver did not pass {point} (exit {status})"

        engine.clock_offset_ms = scenario.clock_offset_ms
        await asyncio.sleep(RECOVERY_S * 1.5)
        await engine.sweep()
        await check_cart(engine, scenario.settles_as, (a, b))
        await retry(engine, scenario, a, b)
        await check_cart(engine, scenario.settles_as, (a, b))
        await postgres_agrees(redis_target, engine, pg_database_url)
    finally:
        await engine.aclose()
