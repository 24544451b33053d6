"""Where a reserve's Redis time goes: each command and encoding a one-line reserve makes, timed in
a loop inside one script, next to the whole reserve script measured the same way as the table.

A loop of `LOOPS` iterations inside one EVAL keeps Redis' caches warm and averages preemption out,
so the parts are comparable with each other; `INFO commandstats` gives the time. Each part uses
the scripts' own include functions (`emit`, `hold_member`, `customer_get`, the fence check) with
the argument shapes of a one-line reserve, on keys of a tag no partition uses, deleted afterwards.
The sum of the parts against the whole shows what the script's own Lua logic costs on top.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from engine.config import EngineSettings
from engine.engine import ReservationEngine
from engine.scripts import with_includes
from engine.types import CartLine
from loadtests.bench.redis_cpu import metered
from loadtests.bench.redis_designs import HOLD_TTL_S, configure, redis_client
from loadtests.bench.workload import Workload

LOOPS = 2_000
ROUNDS = 3  # the median of three is kept: one preempted round does not move it
RESERVES = 2_000  # reserves of the whole-script measure, per round
CONCURRENCY = 64  # concurrent reserve calls: the engine batches them as the selling phase does
TAG = "{p99999}"  # no engine runs this many partitions: nothing else touches these keys

# What each part is for: why a reserve cannot simply drop it.
PARTS: dict[str, str] = {
    "fence": "the partition is verified on this server (once per script call)",
    "replay": "the reservation id is new, or its stored answer is replayed",
    "limits_read": "the customer's units and holds, for the purchase limit and the holds cap",
    "json": "request lines decoded; lines, the event's data and the answer encoded",
    "event": "the reserved event the worker, restore and reconcile read (19-field XADD)",
    "hold": "the hold lazy expiry reclaims (ZADD)",
    "limits_write": "the customer's two counters (one HSET)",
    "record": "the reservation's record and its expiry (HSET of 8 fields + PEXPIREAT)",
}
# Cheaper-looking ways to do two of the parts, timed the same way (not part of the sum).
ALTERNATIVES: dict[str, str] = {
    "event_packed": "event",
    "json_concat": "json",
}

_PROBE = (
    r"""--- @include "events"
--- @include "holds"
--- @include "customers"
--- @include "fence"
local n, part, round = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local tag = '"""
    + TAG
    + r"""'
local stream, holds, cust = tag .. ':events', tag .. ':holds', tag .. ':cust'
local now = 1800000000000
local lines_arg = '[[1,1,""]]'
local result = { { 'hot-sku', 1, { { 'wh', 1, 0, 0 } } } }
for i = 1, n do
  -- Ids new in every round: the replay check reads a key the record part has not made yet.
  local rid, customer = 'bench-r' .. round .. '-' .. i, 'bench-c' .. round .. '-' .. i
  if part == 'fence' then
    partition_verified(stream)
  elseif part == 'replay' then
    redis.call('HGETALL', tag .. ':res:' .. rid)
  elseif part == 'limits_read' then
    customer_get(cust, customer)
  elseif part == 'json' then
    cjson.decode(lines_arg)
    local lines_json = cjson.encode(result)
    cjson.encode({ fp = 'a8f3c2d1e4b5a6c7d8e9f0a1b2c3d4e5', line = 1, gen = 'g-' .. rid })
    cjson.encode({ ok = 1, st = 'held', exp = now, cust = customer, ord = '', ext = 0,
                   lines = lines_json, gen = 'g-' .. rid })
  elseif part == 'event' then
    emit(stream, now, { type = 'reserved', sku = 'hot-sku', location = 'wh', d_reserved = 1,
      on_hand = 20000, reserved = i, committed = 0, available = 20000 - i,
      reservation_id = rid, customer_id = customer, backordered = 0,
      expires_at = fmt(now + 600000), data = '{"fp":"a8f3c2d1e4b5a6c7","line":1,"gen":"g"}' })
  elseif part == 'event_packed' then
    -- The same values as one tab-joined field, escape check included (what a packed event
    -- would cost instead of the 19 fields).
    local text = rid .. customer
    if string.find(text, '[\\\t\n\r]') then
      error('probe ids need no escaping')
    end
    redis.call('XADD', stream, '*', 'e', table.concat({ 'reserved', 'hot-sku', 'wh', '0', '1', '0',
      '20000', fmt(i), '0', fmt(20000 - i), rid, '', customer, '', '', '0', fmt(now + 600000),
      '{"fp":"a8f3c2d1e4b5a6c7","line":1,"gen":"g"}', fmt(now) }, '\t'))
  elseif part == 'json_concat' then
    -- The data and the answer built by concatenation instead of cjson (quoting checked).
    local function js(v)
      if string.find(v, '[%c"\\]') then return cjson.encode(v) end
      return '"' .. v .. '"'
    end
    cjson.decode(lines_arg)
    local lines_json = cjson.encode(result)
    local _ = '{"fp":' .. js('a8f3c2d1e4b5a6c7d8e9f0a1b2c3d4e5') .. ',"line":1,"gen":'
      .. js('g-' .. rid) .. '}'
    _ = '{"ok":1,"st":"held","exp":' .. now .. ',"cust":' .. js(customer)
      .. ',"ord":"","ext":0,"lines":' .. js(lines_json) .. ',"gen":' .. js('g-' .. rid) .. '}'
  elseif part == 'hold' then
    redis.call('ZADD', holds, now + 600000, hold_member(rid, customer, { { 'wh', 1 } }))
  elseif part == 'limits_write' then
    redis.call('HSET', cust, 'u:' .. customer, '1', 'h:' .. customer, '1')
  elseif part == 'record' then
    local key = tag .. ':res:' .. rid
    redis.call('HSET', key, 'fp', 'a8f3c2d1e4b5a6c7d8e9f0a1b2c3d4e5', 'cust', customer,
      'st', 'held', 'exp', fmt(now + 600000), 'ca', fmt(now), 'skus', 'hot-sku',
      'lines', '[["hot-sku",1,[["wh",1,0,0]]]]', 'gen', 'g-' .. rid)
    redis.call('PEXPIREAT', key, now + 1200000)
  end
end
return n
"""
)


@dataclass
class ReserveCost:
    """µs of Redis time per one-line reserve: each part, and the whole script inside a batch."""

    parts_us: dict[str, float] = field(default_factory=dict)  # fence: per script call
    alternatives_us: dict[str, float] = field(default_factory=dict)  # see ALTERNATIVES
    whole_us: float = 0.0
    batch: float = 0.0  # reserve requests per script call in the whole-script measure
    whole_range_us: tuple[float, float] = (0.0, 0.0)  # lowest and highest round of the whole
    loops: int = LOOPS

    @property
    def fence_per_reserve_us(self) -> float:
        return self.parts_us.get("fence", 0.0) / self.batch if self.batch else 0.0

    @property
    def parts_sum_us(self) -> float:
        """The parts as a reserve inside a batch pays them (the fence check shared)."""
        per_reserve = (v for k, v in self.parts_us.items() if k != "fence")
        return sum(per_reserve) + self.fence_per_reserve_us

    def as_dict(self) -> dict[str, Any]:
        return {
            "parts_us": self.parts_us,
            "alternatives_us": self.alternatives_us,
            "fence_per_reserve_us": self.fence_per_reserve_us,
            "parts_sum_us": self.parts_sum_us,
            "whole_us": self.whole_us,
            "batch": self.batch,
            "whole_range_us": list(self.whole_range_us),
            "loops": self.loops,
        }


async def _eval_usec(redis: Redis, script: str, part: str, loops: int, round_: int) -> float:
    before = (await redis.info("commandstats")).get("cmdstat_eval", {}).get("usec", 0)
    await redis.eval(script, 0, loops, part, round_)
    after = (await redis.info("commandstats")).get("cmdstat_eval", {}).get("usec", 0)
    return float(after - before)


async def _parts_once(redis: Redis, script: str, loops: int, round_: int) -> dict[str, float]:
    found: dict[str, float] = {}
    for part in ("empty", *PARTS, *ALTERNATIVES):
        await redis.delete(*(f"{TAG}:{k}" for k in ("events", "holds", "cust", "verified")))
        found[part] = await _eval_usec(redis, script, part, loops, round_) / loops
    empty = found.pop("empty")
    return {part: max(0.0, us - empty) for part, us in found.items()}


async def _clean(redis: Redis) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{TAG}:*", count=10_000)]
    for n in range(0, len(keys), 1_000):
        await redis.delete(*keys[n : n + 1_000])


async def measure(
    settings: EngineSettings, redis_url: str, run_id: str, reserves: int = RESERVES
) -> ReserveCost:
    """Rounds of (every part, then the whole script), interleaved so that a slower stretch of a
    shared machine weighs on both; the median of each figure over the rounds."""
    script = with_includes(_PROBE, "reserve cost probe")
    redis = Redis.from_url(redis_url)
    engine = ReservationEngine(redis_client(redis_url, CONCURRENCY), settings)
    await engine.start()
    sku = f"{run_id}-cost"
    await configure(engine, Workload(units=reserves * ROUNDS, buyers=1, soldout_seconds=0, sku=sku))
    line = [CartLine(sku, 1)]

    async def each(work: list[str]) -> None:
        for rid in work:
            await engine.reserve(rid, f"c-{rid}", line, HOLD_TTL_S)

    parts: list[dict[str, float]] = []
    whole: list[float] = []
    batches: list[float] = []
    try:
        for r in range(ROUNDS):
            parts.append(await _parts_once(redis, script, LOOPS, r))
            ids = [f"{run_id}-cost-{r}-{i}" for i in range(reserves)]
            async with metered(redis_url) as spent:
                await asyncio.gather(*(each(ids[i::CONCURRENCY]) for i in range(CONCURRENCY)))
            whole.append(spent.usec / reserves)
            batches.append(reserves / spent.calls if spent.calls else 0.0)
    finally:
        await _clean(redis)
        await redis.aclose()
        await engine.aclose()
    return ReserveCost(
        parts_us={part: statistics.median(p[part] for p in parts) for part in PARTS},
        alternatives_us={part: statistics.median(p[part] for p in parts) for part in ALTERNATIVES},
        whole_us=statistics.median(whole),
        batch=statistics.median(batches),
        whole_range_us=(min(whole), max(whole)),
    )


def lines(cost: ReserveCost | None) -> list[str]:
    if cost is None:
        return []
    p = cost.parts_us
    parts = ", ".join(f"{name} {p[name]:.1f}" for name in PARTS if name != "fence")
    rest = cost.whole_us - cost.parts_sum_us
    return [
        f"Where a reserve's Redis time goes (µs; loops of {cost.loops:,} inside one script, "
        f"median of {ROUNDS}): {parts}; the fence check {p.get('fence', 0):.1f} per script call "
        f"({cost.fence_per_reserve_us:.2f} per reserve at {cost.batch:.1f} per call). Sum "
        f"{cost.parts_sum_us:.1f} of the whole script's {cost.whole_us:.1f} per reserve "
        f"(rounds {cost.whole_range_us[0]:.1f}–{cost.whole_range_us[1]:.1f}; engine calls "
        f"gathered, {CONCURRENCY} at a time): the script's own Lua logic "
        f"(validation, allocation, its tables) {rest:.1f}. Alternatives timed the same way: "
        + ", ".join(
            f"{alt} {cost.alternatives_us.get(alt, 0):.1f} (vs {part} {p.get(part, 0):.1f})"
            for alt, part in ALTERNATIVES.items()
        )
    ]
