"""Redis' own CPU accounting of the scripts: INFO commandstats deltas of EVALSHA, not wall clock.

The machine the bench runs on is usually shared, so wall-clock throughput moves with its load;
the microseconds Redis spends inside the scripts do not. A Redis core is what one hot SKU can
never get more of, so µs per reserve is the ceiling of a single primary (1e6 / µs reserves/s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis

from engine.config import EngineSettings
from engine.engine import ReservationEngine
from engine.types import CartLine
from loadtests.bench.redis_designs import HOLD_TTL_S, configure, redis_client
from loadtests.bench.workload import Workload

CONCURRENCY = 64
PROBE_HOLDS = 2_000  # reservations the commit/release probe takes (half committed, half released)


@dataclass
class ScriptCpu:
    """EVALSHA calls and the µs Redis spent in them over a stretch of work."""

    calls: int = 0
    usec: int = 0


async def script_cpu(redis: Redis) -> ScriptCpu:
    stats = await redis.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha") or {}
    return ScriptCpu(int(evalsha.get("calls", 0)), int(evalsha.get("usec", 0)))


@contextlib.asynccontextmanager
async def metered(redis_url: str, spent: ScriptCpu | None = None) -> AsyncIterator[ScriptCpu]:
    """Yields `spent` (or a new ScriptCpu), set on exit to what the scripts cost in the block."""
    redis = Redis.from_url(redis_url)
    spent = ScriptCpu() if spent is None else spent
    try:
        before = await script_cpu(redis)
        yield spent
        after = await script_cpu(redis)
        spent.calls, spent.usec = after.calls - before.calls, after.usec - before.usec
    finally:
        await redis.aclose()


@dataclass
class CommitReleaseCpu:
    """Script µs per engine.commit and per engine.release (every EVALSHA each one made)."""

    commits: int
    us_per_commit: float
    releases: int
    us_per_release: float
    calls_per_operation: float  # EVALSHA calls per commit or release: 1 when the SKUs are known


async def measure_commit_release(
    settings: EngineSettings, redis_url: str, run_id: str, holds: int = PROBE_HOLDS
) -> CommitReleaseCpu:
    """Takes `holds` one-line holds, commits half and releases the other half, metering each."""
    engine = ReservationEngine(redis_client(redis_url, CONCURRENCY), settings)
    await engine.start()
    sku = f"{run_id}-cpu"
    await configure(engine, Workload(units=holds, buyers=1, soldout_seconds=0, sku=sku))
    line = [CartLine(sku, 1)]
    ids = [f"{run_id}-cpu-{i}" for i in range(holds)]

    async def each(work: list[str], action: str) -> None:
        for rid in work:
            if action == "reserve":
                await engine.reserve(rid, f"c-{rid}", line, HOLD_TTL_S)
            elif action == "commit":
                await engine.commit(rid, f"o-{rid}")
            else:
                await engine.release(rid)

    async def run(work: list[str], action: str) -> None:
        await asyncio.gather(*(each(work[i::CONCURRENCY], action) for i in range(CONCURRENCY)))

    try:
        await run(ids, "reserve")
        half = holds // 2
        async with metered(redis_url) as commits:
            await run(ids[:half], "commit")
        async with metered(redis_url) as releases:
            await run(ids[half:], "release")
    finally:
        await engine.aclose()
    released = holds - half
    return CommitReleaseCpu(
        commits=half,
        us_per_commit=commits.usec / half,
        releases=released,
        us_per_release=releases.usec / released,
        calls_per_operation=(commits.calls + releases.calls) / holds,
    )
