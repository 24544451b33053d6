"""Two latencies the throughput table cannot show.

- light load: one client reserving one unit at a time, sequentially, through the engine;
- re-offer: while buyers hammer a sold-out SKU through one engine (whose sold-out fast path is
  answering them locally), another engine, standing in for another process, releases a hold; the
  time from that release to a buyer holding the unit is what the fast path costs a buyer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from engine.config import EngineSettings
from engine.engine import ReservationEngine
from engine.errors import InsufficientStock
from engine.types import CartLine
from loadtests.bench.redis_designs import HOLD_TTL_S, configure, redis_client
from loadtests.bench.workload import Workload, percentile_ms

REOFFER_BUYERS = 50


@dataclass
class LatencyResult:
    sequential_calls: int
    sequential_p50_ms: float
    sequential_p99_ms: float
    sequential_p999_ms: float
    reoffers: int
    reoffer_p50_ms: float
    reoffer_max_ms: float
    recheck_ms: int


async def _engine(settings: EngineSettings, redis_url: str) -> ReservationEngine:
    engine = ReservationEngine(redis_client(redis_url, settings.redis_max_connections), settings)
    await engine.start()
    return engine


async def sequential(
    settings: EngineSettings, redis_url: str, calls: int, run_id: str
) -> list[int]:
    """Nanoseconds per reserve call, one call at a time."""
    engine = await _engine(settings, redis_url)
    sku = f"{run_id}-seq"
    try:
        await configure(engine, Workload(units=calls, buyers=1, soldout_seconds=0, sku=sku))
        line = [CartLine(sku, 1)]
        for n in range(min(200, calls // 10)):  # warm the connection and the interpreter
            await engine.reserve(f"{run_id}-warm-{n}", "warm", line, HOLD_TTL_S)
            await engine.release(f"{run_id}-warm-{n}")
        took = []
        for n in range(calls):
            start = time.perf_counter_ns()
            await engine.reserve(f"{run_id}-seq-{n}", f"s{n}", line, HOLD_TTL_S)
            took.append(time.perf_counter_ns() - start)
        return took
    finally:
        await engine.aclose()


async def reoffer(settings: EngineSettings, redis_url: str, rounds: int, run_id: str) -> list[int]:
    """Nanoseconds from another process's release to a hammering buyer holding the unit.

    Each round has a fresh SKU with one unit, held by the other engine: the buyers see it sold out
    (their engine marks it), then the other engine releases it and the clock runs until one of
    them holds it.
    """
    buyers_engine = await _engine(settings, redis_url)
    other = await _engine(settings, redis_url)
    took: list[int] = []
    current: list[CartLine] = []
    won = asyncio.Event()
    stop = asyncio.Event()
    counter = 0

    async def buyer() -> None:
        nonlocal counter
        while not stop.is_set():
            if not current or won.is_set():
                await asyncio.sleep(0.001)
                continue
            counter += 1
            try:
                await buyers_engine.reserve(f"{run_id}-rob-{counter}", "b", current, HOLD_TTL_S)
            except InsufficientStock:
                await asyncio.sleep(0)  # a refusal answered locally would never yield otherwise
                continue
            won.set()

    tasks = [asyncio.create_task(buyer()) for _ in range(REOFFER_BUYERS)]
    try:
        for n in range(rounds):
            sku = f"{run_id}-reoffer-{n}"
            await configure(other, Workload(units=1, buyers=1, soldout_seconds=0, sku=sku))
            await other.reserve(f"{run_id}-ro-{n}", "holder", [CartLine(sku, 1)], HOLD_TTL_S)
            current[:] = [CartLine(sku, 1)]
            won.clear()
            await asyncio.sleep(0.05)  # the buyers are refused and mark it sold out
            released = time.perf_counter_ns()
            await other.release(f"{run_id}-ro-{n}")
            await asyncio.wait_for(won.wait(), timeout=5)
            took.append(time.perf_counter_ns() - released)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await buyers_engine.aclose()
        await other.aclose()
    return took


async def measure(
    settings: EngineSettings, redis_url: str, calls: int, run_id: str
) -> LatencyResult:
    seq = sorted(await sequential(settings, redis_url, calls, run_id))
    ro = sorted(await reoffer(settings, redis_url, max(5, min(30, calls // 100)), run_id))
    return LatencyResult(
        sequential_calls=len(seq),
        sequential_p50_ms=percentile_ms(seq, 0.5),
        sequential_p99_ms=percentile_ms(seq, 0.99),
        sequential_p999_ms=percentile_ms(seq, 0.999),
        reoffers=len(ro),
        reoffer_p50_ms=percentile_ms(ro, 0.5),
        reoffer_max_ms=ro[-1] / 1e6,
        recheck_ms=settings.sold_out_recheck_ms,
    )
