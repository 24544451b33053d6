"""The engine on a Redis Cluster next to the single node, in the same bench run.

Four rows, each cluster row right after its single-node twin so the machine's load drifts as
little as possible between the two:
    engine                the hot SKU on the single node (the bench's usual `engine` row)
    engine@cluster        the hot SKU on the cluster
    engine-many           MANY_SKUS SKUs sharing the units, on the single node
    engine-many@cluster   the same on the cluster
Both many-SKU rows use CLUSTER_PARTITIONS partitions, so the engine batches the same way on both
and only the servers differ.

Each row's selling phase is metered: EVALSHA calls and µs (INFO commandstats) and the process CPU
(INFO cpu) of every node, primaries and replicas, and the bench process' own CPU (the engine).
Per-primary CPU per reserve is the basis of the README's projection of throughput by primaries.
Last, what a cart across two partitions costs against a cart within one (reserve + commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from redis.asyncio import Redis

from engine.config import EngineSettings
from engine.connection import ClusterClient
from engine.engine import ReservationEngine
from engine.keys import KeySchema
from engine.types import CartLine
from loadtests.bench import redis_designs
from loadtests.bench.redis_designs import HOLD_TTL_S, configure
from loadtests.bench.workload import DesignResult, Workload, percentile_ms, run_phases, summarize

CLUSTER_PARTITIONS = 16
MANY_SKUS = 64  # at most one per buyer: a SKU nobody asks for would never sell out
CART_CONCURRENCY = 32
HOT, MANY = "engine@cluster", "engine-many@cluster"
SINGLE_HOT, SINGLE_MANY = "engine", "engine-many"


@dataclass(frozen=True)
class Node:
    url: str
    role: str  # "primary" or "replica"

    @property
    def name(self) -> str:
        return self.url.removeprefix("redis://").removesuffix("/0")


@dataclass
class NodeCpu:
    """One node over a stretch of work: its EVALSHA calls and µs (INFO commandstats), and the
    CPU seconds the whole process used (INFO cpu: parsing, networking, replication as well)."""

    node: str
    role: str
    calls: int = 0
    usec: int = 0
    cpu_s: float = 0.0


@dataclass
class RowCpu:
    """Where one row's CPU went: the bench process (the engine) and every Redis node."""

    client_cpu_s: float = 0.0
    nodes: list[NodeCpu] = field(default_factory=list)

    def per_reserve_us(self, sold: int, role: str, member: str = "cpu_s") -> float:
        spent = sum(getattr(n, member) for n in self.nodes if n.role == role)
        scale = 1e6 if member == "cpu_s" else 1.0
        return spent * scale / sold if sold else 0.0


@dataclass
class CartCost:
    """Reserve + commit of a 2-line cart: its lines in one partition, or in two on two primaries."""

    partitions: int
    carts: int
    carts_per_s: float
    p50_ms: float
    p99_ms: float
    evalsha_per_cart: float
    redis_us_per_cart: float  # EVALSHA µs, every primary summed
    primary_cpu_us_per_cart: float  # the primaries' whole CPU (INFO cpu)
    client_cpu_us_per_cart: float  # the bench process' CPU: the engine's share


@dataclass
class ClusterReport:
    primaries: int
    replicas: int
    partitions: int
    many_skus: int
    hot_ratio: float | None = None  # engine@cluster attempts/s ÷ engine's
    many_ratio: float | None = None  # engine-many@cluster ÷ engine-many
    cpu: dict[str, RowCpu] = field(default_factory=dict)  # row -> its selling phase's CPU
    carts: list[CartCost] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "primaries": self.primaries,
            "replicas": self.replicas,
            "partitions": self.partitions,
            "many_skus": self.many_skus,
            "hot_ratio": self.hot_ratio,
            "many_ratio": self.many_ratio,
            "cpu": {
                row: {
                    "client_cpu_s": c.client_cpu_s,
                    "nodes": [n.__dict__ for n in c.nodes],
                }
                for row, c in self.cpu.items()
            },
            "carts": [c.__dict__ for c in self.carts],
        }


def cluster_settings(settings: EngineSettings, url: str) -> EngineSettings:
    return settings.model_copy(
        update={"redis_url": url, "redis_cluster": True, "partitions": CLUSTER_PARTITIONS}
    )


async def cluster_nodes(cluster_url: str) -> list[Node]:
    client = ClusterClient.from_url(cluster_url)
    try:
        await client.initialize()
        return [
            Node(f"redis://{n.host}:{n.port}/0", role)
            for role, nodes in (
                ("primary", client.get_primaries()),
                ("replica", client.get_replicas()),
            )
            for n in nodes
        ]
    finally:
        await client.aclose()


async def _node_cpu(node: Node) -> NodeCpu:
    redis = Redis.from_url(node.url)
    try:
        stats = await redis.info("commandstats")
        cpu = await redis.info("cpu")
    finally:
        await redis.aclose()
    evalsha = stats.get("cmdstat_evalsha") or {}
    return NodeCpu(
        node.name,
        node.role,
        int(evalsha.get("calls", 0)),
        int(evalsha.get("usec", 0)),
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
    )


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.asynccontextmanager
async def metered(nodes: list[Node], spent: RowCpu) -> AsyncIterator[RowCpu]:
    """Yields `spent`, set on exit to what this process and each node spent in the block."""
    before = [await _node_cpu(n) for n in nodes]
    client_before = _process_cpu_s()
    yield spent
    spent.client_cpu_s = _process_cpu_s() - client_before
    after = [await _node_cpu(n) for n in nodes]
    spent.nodes = [
        NodeCpu(a.node, a.role, a.calls - b.calls, a.usec - b.usec, a.cpu_s - b.cpu_s)
        for a, b in zip(after, before, strict=True)
    ]


async def run_row(
    name: str, settings: EngineSettings, url: str, workload: Workload, nodes: list[Node]
) -> tuple[DesignResult, RowCpu]:
    """One engine row on `url` (a cluster when settings say so), its selling phase metered."""
    skus = workload.names()

    async def available() -> int:
        return (await redis_designs.redis_levels(settings, url, skus))[0]

    async with redis_designs.in_process_engine(settings, url, workload, workload.sku) as attempt:
        spent = RowCpu()
        meter = metered(nodes, spent)
        selling, soldout, left = await run_phases(workload, attempt, available, meter)
    _, oversold = await redis_designs.redis_levels(settings, url, skus)
    result = summarize(name, workload, selling, soldout, left, oversold)
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    calls = sum(n.calls for n in spent.nodes)
    if calls and selling.sold:
        result.redis_us_per_reserve = sum(n.usec for n in spent.nodes) / selling.sold
        result.mean_batch = selling.sold / calls
    return result, spent


async def measure(
    settings: EngineSettings,
    single_url: str,
    cluster_url: str,
    base: Workload,
    progress: Callable[[str], None],
) -> tuple[list[DesignResult], ClusterReport]:
    """The `engine` row (the hot SKU on the single node) and the cluster rows after it."""
    on_cluster = cluster_settings(settings, cluster_url)
    many_single = settings.model_copy(update={"partitions": CLUSTER_PARTITIONS})
    nodes = await cluster_nodes(cluster_url)
    single = [Node(single_url, "primary")]
    skus = min(MANY_SKUS, base.buyers)
    report = ClusterReport(
        primaries=sum(n.role == "primary" for n in nodes),
        replicas=sum(n.role == "replica" for n in nodes),
        partitions=CLUSTER_PARTITIONS,
        many_skus=skus,
    )
    plan = (
        (SINGLE_HOT, settings, single_url, 1, single),
        (HOT, on_cluster, cluster_url, 1, nodes),
        (SINGLE_MANY, many_single, single_url, skus, single),
        (MANY, on_cluster, cluster_url, skus, nodes),
    )
    rows: list[DesignResult] = []
    for name, row_settings, url, count, metered_nodes in plan:
        what = f"{base.units} units, {base.buyers} buyers" + (
            f", {count} SKUs" if count > 1 else ""
        )
        progress(f"running {name} ({what})…")
        workload = replace(base, sku=f"{base.sku}-{name}", skus=count)
        row, report.cpu[name] = await run_row(name, row_settings, url, workload, metered_nodes)
        rows.append(row)
    hot_single, hot, many, many_c = rows
    report.hot_ratio = _ratio(hot, hot_single)
    report.many_ratio = _ratio(many_c, many)
    progress("timing carts within one partition and across two…")
    report.carts = await cart_costs(on_cluster, cluster_url, nodes, base.sku, base.units)
    return rows, report


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
    settings: EngineSettings, url: str, nodes: list[Node], run_id: str, units: int
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
            await _time_carts(engine, shape, skus, carts, nodes, f"{run_id}-k{shape}")
            for shape, skus in sorted(shapes.items())
        ]
    finally:
        await engine.aclose()


async def _time_carts(
    engine: ReservationEngine,
    shape: int,
    skus: list[str],
    carts: int,
    nodes: list[Node],
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

    async with metered(nodes, RowCpu()) as spent:
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
        evalsha_per_cart=sum(n.calls for n in spent.nodes) / carts,
        redis_us_per_cart=sum(n.usec for n in spent.nodes) / carts,
        primary_cpu_us_per_cart=spent.per_reserve_us(carts, "primary"),
        client_cpu_us_per_cart=spent.client_cpu_s * 1e6 / carts,
    )
