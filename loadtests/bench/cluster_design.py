"""The engine on a Redis Cluster next to the single node, in the same bench run.

Rows, each pair run back to back so the machine's load drifts as little as possible between them:
    engine@cluster        the hot SKU on the cluster (after `engine`, the hot SKU on one node)
    engine-many           MANY_SKUS SKUs sharing the units, on the single node
    engine-many@cluster   the same on the cluster
Both many-SKU rows and the cluster use CLUSTER_PARTITIONS partitions, so the engine batches the
same way on both and only the servers differ.

Besides the rows: every primary's EVALSHA time over each cluster row (INFO commandstats on each
primary: per-primary CPU per reserve, the basis of the README's projection), and what a cart
across two partitions costs against a cart within one (reserve + commit on the cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.config import EngineSettings
from engine.connection import ClusterClient
from engine.engine import ReservationEngine
from engine.keys import KeySchema
from engine.types import CartLine
from loadtests.bench import redis_cpu, redis_designs
from loadtests.bench.redis_designs import HOLD_TTL_S, configure
from loadtests.bench.workload import DesignResult, Workload, percentile_ms, run_phases, summarize

CLUSTER_PARTITIONS = 16
MANY_SKUS = 64  # at most one per buyer: a SKU nobody asks for would never sell out
CART_CONCURRENCY = 32
HOT, MANY = "engine@cluster", "engine-many@cluster"
SINGLE_HOT, SINGLE_MANY = "engine", "engine-many"


@dataclass
class PrimaryCpu:
    """One primary's EVALSHA calls and µs over a cluster row."""

    node: str
    calls: int
    usec: int


@dataclass
class CartCost:
    """Reserve + commit of a 2-line cart: its lines in one partition, or in two on two primaries."""

    partitions: int
    carts: int
    carts_per_s: float
    p50_ms: float
    p99_ms: float
    evalsha_per_cart: float
    redis_us_per_cart: float


@dataclass
class ClusterReport:
    primaries: int
    partitions: int
    many_skus: int
    hot_ratio: float | None = None  # engine@cluster attempts/s ÷ engine's
    many_ratio: float | None = None  # engine-many@cluster ÷ engine-many
    per_primary: dict[str, list[PrimaryCpu]] = field(default_factory=dict)  # row -> primaries
    us_per_reserve: dict[str, float] = field(default_factory=dict)  # row -> Σ primaries µs / sold
    carts: list[CartCost] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "primaries": self.primaries,
            "partitions": self.partitions,
            "many_skus": self.many_skus,
            "hot_ratio": self.hot_ratio,
            "many_ratio": self.many_ratio,
            "per_primary": {k: [p.__dict__ for p in v] for k, v in self.per_primary.items()},
            "us_per_reserve": self.us_per_reserve,
            "carts": [c.__dict__ for c in self.carts],
        }


def cluster_settings(settings: EngineSettings, url: str) -> EngineSettings:
    return settings.model_copy(
        update={"redis_url": url, "redis_cluster": True, "partitions": CLUSTER_PARTITIONS}
    )


async def primary_urls(cluster_url: str) -> list[str]:
    client = ClusterClient.from_url(cluster_url)
    try:
        await client.initialize()
        return [f"redis://{n.host}:{n.port}/0" for n in client.get_primaries()]
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def metered_primaries(urls: list[str]) -> AsyncIterator[list[PrimaryCpu]]:
    """Yields a list filled on exit with each primary's EVALSHA calls and µs in the block."""
    spent = [redis_cpu.ScriptCpu() for _ in urls]
    out: list[PrimaryCpu] = []
    async with contextlib.AsyncExitStack() as stack:
        for url, cpu in zip(urls, spent, strict=True):
            await stack.enter_async_context(redis_cpu.metered(url, cpu))
        yield out
    out.extend(
        PrimaryCpu(url.removeprefix("redis://").removesuffix("/0"), cpu.calls, cpu.usec)
        for url, cpu in zip(urls, spent, strict=True)
    )


async def run_row(
    name: str, settings: EngineSettings, url: str, workload: Workload, primaries: list[str]
) -> tuple[DesignResult, list[PrimaryCpu]]:
    """One engine row on `url` (a cluster when settings say so), metered per primary."""
    skus = workload.names()

    async def available() -> int:
        return (await redis_designs.redis_levels(settings, url, skus))[0]

    meter_urls = primaries if settings.redis_cluster else [url]
    async with redis_designs.in_process_engine(settings, url, workload, workload.sku) as attempt:
        async with metered_primaries(meter_urls) as per_primary:
            selling, soldout, left = await run_phases(workload, attempt, available)
    _, oversold = await redis_designs.redis_levels(settings, url, skus)
    result = summarize(name, workload, selling, soldout, left, oversold)
    # The whole run is metered (the sold-out phase answers from memory: no script calls).
    calls, usec = sum(p.calls for p in per_primary), sum(p.usec for p in per_primary)
    if calls and selling.sold:
        result.redis_us_per_reserve = usec / selling.sold
        result.mean_batch = selling.sold / calls
    return result, per_primary


async def measure(
    settings: EngineSettings,
    single_url: str,
    cluster_url: str,
    base: Workload,
    single_hot: DesignResult,
    run_id: str,
    progress: Callable[[str], None],
) -> tuple[list[DesignResult], ClusterReport]:
    """The cluster rows and figures; `single_hot` is the `engine` row just measured."""
    on_cluster = cluster_settings(settings, cluster_url)
    many_single = settings.model_copy(update={"partitions": CLUSTER_PARTITIONS})
    primaries = await primary_urls(cluster_url)
    skus = min(MANY_SKUS, base.buyers)
    report = ClusterReport(len(primaries), CLUSTER_PARTITIONS, skus)

    def workload(name: str, count: int) -> Workload:
        return Workload(base.units, base.buyers, base.soldout_seconds, f"{run_id}-{name}", count)

    progress(f"running {HOT} ({base.units} units, {base.buyers} buyers)…")
    hot, report.per_primary[HOT] = await run_row(
        HOT, on_cluster, cluster_url, workload("hot-c", 1), primaries
    )
    progress(f"running {SINGLE_MANY} ({skus} SKUs)…")
    many, _ = await run_row(
        SINGLE_MANY, many_single, single_url, workload("many-s", skus), [single_url]
    )
    progress(f"running {MANY} ({skus} SKUs)…")
    many_c, report.per_primary[MANY] = await run_row(
        MANY, on_cluster, cluster_url, workload("many-c", skus), primaries
    )
    report.hot_ratio = _ratio(hot, single_hot)
    report.many_ratio = _ratio(many_c, many)
    for row in (hot, many_c):
        spent = sum(p.usec for p in report.per_primary[row.design])
        report.us_per_reserve[row.design] = spent / row.sold if row.sold else 0.0
    progress("timing carts within one partition and across two…")
    report.carts = await cart_costs(on_cluster, cluster_url, primaries, run_id, base.units)
    return [hot, many, many_c], report


def _ratio(cluster: DesignResult, single: DesignResult) -> float | None:
    return cluster.attempts_per_s / single.attempts_per_s if single.attempts_per_s else None


def cart_skus(client: ClusterClient, keys: KeySchema, run_id: str) -> dict[int, list[str]]:
    """Two SKUs in one partition, and two in partitions owned by different primaries."""
    names = [f"{run_id}-cart-{i}" for i in range(400)]
    by_part: dict[int, list[str]] = {}
    for name in names:
        by_part.setdefault(keys.for_sku(name).number, []).append(name)
    same = next(group[:2] for group in by_part.values() if len(group) >= 2)
    first = same[0]

    def node(sku: str) -> str:
        owner = client.get_node_from_key(keys.for_sku(sku).skus)
        assert owner is not None, "the client knows every slot once started"
        return str(owner.name)

    other = next(n for n in names if node(n) != node(first))
    return {1: same, 2: [first, other]}


async def cart_costs(
    settings: EngineSettings, url: str, primaries: list[str], run_id: str, units: int
) -> list[CartCost]:
    """Carts of 2 lines, reserved then committed by CART_CONCURRENCY callers; per shape."""
    client = redis_designs.engine_client(settings, url, settings.redis_max_connections)
    engine = ReservationEngine(client, settings)
    await engine.start()
    carts = max(CART_CONCURRENCY, min(units // 4, 4_000))
    try:
        assert isinstance(client, ClusterClient)
        shapes = cart_skus(client, engine.keys, run_id)
        for sku in {s for pair in shapes.values() for s in pair}:
            await configure(engine, Workload(carts * 2, 1, 0, sku))
        return [
            await _time_carts(engine, shape, skus, carts, primaries, f"{run_id}-k{shape}")
            for shape, skus in sorted(shapes.items())
        ]
    finally:
        await engine.aclose()


async def _time_carts(
    engine: ReservationEngine,
    shape: int,
    skus: list[str],
    carts: int,
    primaries: list[str],
    prefix: str,
) -> CartCost:
    lines = [CartLine(sku, 1) for sku in skus]
    latencies: list[int] = []

    async def caller(ids: range) -> None:
        for i in ids:
            start = time.perf_counter_ns()
            await engine.reserve(f"{prefix}-{i}", f"c{i}", lines, HOLD_TTL_S)
            await engine.commit(f"{prefix}-{i}", f"o{i}")
            latencies.append(time.perf_counter_ns() - start)

    async with metered_primaries(primaries) as spent:
        began = time.perf_counter()
        await asyncio.gather(
            *(caller(range(c, carts, CART_CONCURRENCY)) for c in range(CART_CONCURRENCY))
        )
        seconds = time.perf_counter() - began
    latencies.sort()
    return CartCost(
        partitions=shape,
        carts=carts,
        carts_per_s=carts / seconds,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        evalsha_per_cart=sum(p.calls for p in spent) / carts,
        redis_us_per_cart=sum(p.usec for p in spent) / carts,
    )
