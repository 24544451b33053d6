"""Redis bytes per active hold and per finished (released) reservation, from INFO memory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine.config import EngineSettings
from engine.engine import ReservationEngine
from engine.types import CartLine
from loadtests.bench.redis_designs import HOLD_TTL_S, configure, redis_client
from loadtests.bench.workload import Workload

CONCURRENCY = 64
# The full run's sample: per-hold figures over fewer holds carry fixed costs (stream nodes, the
# allocator's arenas) spread thin, so they are not comparable with it.
COMPARABLE_HOLDS = 100_000


@dataclass
class MemoryResult:
    holds: int
    bytes_per_active_hold: float
    bytes_per_finished_reservation: float
    # The same without the events they wrote: the sync worker trims acknowledged events, so in a
    # running stack these are the figures that stay for the retention window.
    bytes_per_active_hold_without_events: float = 0.0
    bytes_per_finished_reservation_without_events: float = 0.0


async def used_memory(engine: ReservationEngine) -> int:
    info = await engine.redis.info("memory")
    return int(info["used_memory"])


async def stream_bytes(engine: ReservationEngine) -> int:
    """Exact (SAMPLES 0) memory of every partition stream; read only, nothing is trimmed."""
    total = 0
    for part in engine.keys.all():
        total += int(await engine.redis.memory_usage(part.events, samples=0) or 0)
    return total


async def measure(
    settings: EngineSettings, redis_url: str, holds: int, run_id: str
) -> MemoryResult:
    """Takes `holds` one-line holds on a fresh SKU, then releases them all.

    Deltas are against the level after the SKU exists, so only holds and finished reservations
    (hash, hold member, customer counters, their stream events) are counted.
    """
    engine = ReservationEngine(redis_client(redis_url, CONCURRENCY), settings)
    await engine.start()
    sku = f"{run_id}-mem"
    await configure(engine, Workload(units=holds, buyers=1, soldout_seconds=0, sku=sku))
    line = [CartLine(sku, 1)]
    ids = [f"{run_id}-mem-{i}" for i in range(holds)]

    async def each(work: list[str], action: str) -> None:
        for rid in work:
            if action == "reserve":
                # One customer per hold, as in a real sale: per-customer counters are counted.
                await engine.reserve(rid, f"m{rid.rsplit('-', 1)[1]}", line, HOLD_TTL_S)
            else:
                await engine.release(rid)

    async def run(action: str) -> None:
        await asyncio.gather(*(each(ids[i::CONCURRENCY], action) for i in range(CONCURRENCY)))

    try:
        before, events_before = await used_memory(engine), await stream_bytes(engine)
        await run("reserve")
        held, events_held = await used_memory(engine), await stream_bytes(engine)
        await run("release")
        finished, events_finished = await used_memory(engine), await stream_bytes(engine)
    finally:
        await engine.aclose()
    return MemoryResult(
        holds=holds,
        bytes_per_active_hold=(held - before) / holds,
        bytes_per_finished_reservation=(finished - before) / holds,
        bytes_per_active_hold_without_events=(held - before - (events_held - events_before))
        / holds,
        bytes_per_finished_reservation_without_events=(
            finished - before - (events_finished - events_before)
        )
        / holds,
    )
