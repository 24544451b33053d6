"""What a batch of reserves writes: fewer Redis calls, the same state and the same events.

The reserve script writes a SKU's `reserved` total once per batch and a customer's two counters
in one write; every event must still carry the totals as they were right after its request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine import CartLine
from tests.engine_support import check_invariants, make_engine, sku


async def command_calls(redis: Any, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_batch_writes_reserved_once_and_every_event_carries_its_own_totals(
    redis_client: Any, redis_url: str
) -> None:
    # One batch in flight: the requests are applied in arrival order, one lone call then a batch.
    engine = await make_engine(redis_url, reserve_batches_in_flight=1)
    await engine.configure_sku("hot", sku(40))
    part = engine.keys.for_sku("hot")
    redis: Any = engine.redis  # untyped replies: this test reads raw hashes and stream entries
    increments = await command_calls(engine.redis, "hincrby")
    start = (await engine.redis.xinfo_stream(part.events))["last-generated-id"]

    await asyncio.gather(
        *(engine.reserve(f"r{n}", f"c{n}", [CartLine("hot", 1)]) for n in range(30))
    )

    # No per-request increment: totals and counters are set from what the script already read.
    assert await command_calls(engine.redis, "hincrby") == increments
    assert await engine.redis.hget(part.sku("hot"), "rs:wh-1") == b"30"
    counters = await engine.redis.hgetall(part.customers("hot"))
    assert counters == {f"{k}:c{n}".encode(): b"1" for n in range(30) for k in ("u", "h")}
    events = [
        fields
        for _, fields in await redis.xrange(part.events, min=f"({start.decode()}")
        if fields[b"type"] == b"reserved"
    ]
    assert [int(f[b"reserved"]) for f in events] == list(range(1, 31))
    assert [int(f[b"available"]) for f in events] == [40 - n for n in range(1, 31)]
    assert {(f[b"d_reserved"], f[b"d_on_hand"], f[b"d_committed"]) for f in events} == {
        (b"1", b"0", b"0")
    }
    reservation = await engine.redis.hgetall(part.reservation("r0"))
    assert b"ext" not in reservation  # written by the first extension only
    assert (await engine.get_reservation("r0")).extensions == 0
    await check_invariants(engine, ["hot"])
    await engine.aclose()
