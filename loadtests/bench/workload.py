"""The workload every design runs, so their figures compare like for like.

One hot SKU with `units` units (or `skus` SKUs sharing them); `buyers` concurrent buyers each ask
for 1 unit at a time until they are told it is sold out (selling phase); then the same buyers keep
asking for `soldout_seconds` (sold-out phase: most launch-day traffic is refusals). A design only
supplies `attempt`, which answers one request with an Outcome, and `available`, the store's own
count at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.Enum):
    SOLD = "sold"
    OUT = "out"  # the store saw no stock left: a legitimate refusal
    REFUSED = "refused"  # refused for another reason (lost an optimistic race, error)


Attempt = Callable[[int, int], Awaitable[Outcome]]  # (buyer, sequence number) -> outcome


@dataclass(frozen=True)
class Workload:
    units: int
    buyers: int
    soldout_seconds: float
    sku: str
    # Many-SKU variant: `skus` SKUs named `<sku>-<i>` share the units evenly and buyer b asks
    # for SKU b % skus only, so every buyer is told "sold out" exactly when its SKU is.
    skus: int = 1

    def names(self) -> list[str]:
        if self.skus == 1:
            return [self.sku]
        return [f"{self.sku}-{i}" for i in range(self.skus)]

    def sku_of(self, buyer: int) -> str:
        return self.sku if self.skus == 1 else f"{self.sku}-{buyer % self.skus}"

    def units_of(self, index: int) -> int:
        """Units of the index-th SKU: the remainder goes to the first ones."""
        return self.units // self.skus + (1 if index < self.units % self.skus else 0)


@dataclass
class PhaseCounts:
    attempts: int = 0
    sold: int = 0
    out: int = 0
    refused: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)


@dataclass
class DesignResult:
    design: str
    units: int
    buyers: int
    sold: int
    oversold: int
    false_refusals: int
    attempts_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    soldout_refusals_per_s: float
    available_after_selling: int
    selling_seconds: float
    attempts: int
    refused_other: int
    peak_rss_mib: float = 0.0
    # Designs on Redis: EVALSHA µs (INFO commandstats) per unit sold in the selling phase, and
    # units sold per EVALSHA call (the mean reserve batch).
    redis_us_per_reserve: float | None = None
    mean_batch: float | None = None
    ratio_to_engine: float | None = None
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def percentile_ms(sorted_ns: list[int], fraction: float) -> float:
    if not sorted_ns:
        return 0.0
    index = min(len(sorted_ns) - 1, int(fraction * len(sorted_ns)))
    return sorted_ns[index] / 1e6


async def run_phases(
    workload: Workload,
    attempt: Attempt,
    available: Callable[[], Awaitable[int]],
    selling_meter: AbstractAsyncContextManager[object] | None = None,
) -> tuple[PhaseCounts, PhaseCounts, int]:
    """Runs both phases; returns their counts and the store's available units between them.

    `selling_meter` is entered around the selling phase alone (Redis' CPU accounting).

    Latency is reported for the selling phase: the sold-out phase has its own figure
    (refusals/s), and mixing in refusals a fast path answers locally would flatter the tail.
    """
    selling = PhaseCounts()
    soldout = PhaseCounts()
    clock = time.perf_counter_ns

    async def sell(buyer: int) -> int:
        seq = 0
        # Every buyer asks until the store itself says no stock is left; a refusal for any other
        # reason (an optimistic design losing its retries) sends the buyer straight back.
        while True:
            seq += 1
            start = clock()
            outcome = await attempt(buyer, seq)
            selling.latencies_ns.append(clock() - start)
            selling.attempts += 1
            if outcome is Outcome.SOLD:
                selling.sold += 1
            elif outcome is Outcome.OUT:
                selling.out += 1
                return seq
            else:
                selling.refused += 1

    async with selling_meter or contextlib.nullcontext():
        began = time.perf_counter()
        last_seq = await asyncio.gather(*(sell(b) for b in range(workload.buyers)))
        selling.seconds = time.perf_counter() - began
    # Read before the sold-out phase, whose attempts could only lower it further.
    left = await available()

    stop_at = time.perf_counter() + workload.soldout_seconds

    async def keep_asking(buyer: int, seq: int) -> None:
        while time.perf_counter() < stop_at:
            seq += 1
            start = clock()
            outcome = await attempt(buyer, seq)
            soldout.latencies_ns.append(clock() - start)
            soldout.attempts += 1
            if outcome is Outcome.SOLD:
                soldout.sold += 1
            elif outcome is Outcome.OUT:
                soldout.out += 1
            else:
                soldout.refused += 1

    began = time.perf_counter()
    await asyncio.gather(*(keep_asking(b, s) for b, s in enumerate(last_seq)))
    soldout.seconds = time.perf_counter() - began
    return selling, soldout, left


def summarize(
    design: str,
    workload: Workload,
    selling: PhaseCounts,
    soldout: PhaseCounts,
    available_after_selling: int,
    store_oversold: int,
) -> DesignResult:
    """Turns the phase counts into the reported figures.

    A false refusal is a refusal given while units remained: every non-stock refusal of the
    selling phase, plus, if the store still had units when every buyer had been told "sold out",
    each of those sold-out answers too.
    """
    sold = selling.sold + soldout.sold
    false_refusals = selling.refused
    if available_after_selling > 0:
        false_refusals += selling.out
    latencies = sorted(selling.latencies_ns)
    return DesignResult(
        design=design,
        units=workload.units,
        buyers=workload.buyers,
        sold=sold,
        oversold=max(sold - workload.units, store_oversold, 0),
        false_refusals=false_refusals,
        attempts_per_s=selling.attempts / selling.seconds if selling.seconds else 0.0,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        p999_ms=percentile_ms(latencies, 0.999),
        soldout_refusals_per_s=(soldout.out + soldout.refused) / soldout.seconds
        if soldout.seconds
        else 0.0,
        available_after_selling=available_after_selling,
        selling_seconds=selling.seconds,
        attempts=selling.attempts + soldout.attempts,
        refused_other=selling.refused + soldout.refused,
    )
