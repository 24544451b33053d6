"""Builds engines on the test Redis and reads the stock invariants straight from Redis."""

from __future__ import annotations

import json
import os
import signal
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine import LocationConfig, ReservationEngine, SkuConfig
from engine.connection import connect_url
from engine.keys import partition_of
from flashsale.embedded import EmbeddedRedis
from flashsale.procs import pid_alive, wait_until
from flashsale.settings import Settings


async def make_engine(redis_url: str, cluster: bool = False, **overrides: Any) -> ReservationEngine:
    """An engine on a single node, or on a cluster (then with 16 partitions unless overridden)."""
    if cluster:
        overrides.setdefault("partitions", 16)
    settings = Settings(redis_url=redis_url, database_url=None, redis_cluster=cluster, **overrides)
    engine = ReservationEngine(connect_url(redis_url, cluster=cluster), settings)
    await engine.start()
    return engine


def sku(on_hand: int | dict[str, int], **config: Any) -> SkuConfig:
    """A SkuConfig with one location "wh-1" (an int) or several ({location: on_hand})."""
    stock = {"wh-1": on_hand} if isinstance(on_hand, int) else on_hand
    backorder = config.pop("backorder_limit", {})
    locations = tuple(
        LocationConfig(loc, on_hand=q, backorder_limit=backorder.get(loc, 0))
        for loc, q in stock.items()
    )
    return SkuConfig(locations=locations, **config)


async def stream_sums(engine: ReservationEngine) -> dict[tuple[str, str], list[int]]:
    """Sum of event deltas per (sku, location) over every partition stream."""
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for part in engine.keys.all():
        for _, fields in await engine.redis.xrange(part.events):
            f = {k.decode(): v.decode() for k, v in fields.items()}
            if f["location"]:
                s = sums[(f["sku"], f["location"])]
                s[0] += int(f["d_on_hand"])
                s[1] += int(f["d_reserved"])
                s[2] += int(f["d_committed"])
    return sums


async def check_invariants(engine: ReservationEngine, skus: list[str]) -> None:
    """The stock invariants for each SKU, from Redis itself (holds zset and customer hash)."""
    sums = await stream_sums(engine)
    for name in skus:
        snap = await engine.inventory(name)
        part = await engine.placements.partition(name)  # its placement group's, if it has one
        members = await engine.redis.zrange(part.holds(name), 0, -1)
        held: dict[str, int] = defaultdict(int)
        held_by_customer: dict[str, int] = defaultdict(int)
        for raw in members:
            _, customer, allocs = raw.decode().split("|")
            for alloc in allocs.split(";"):
                loc, qty = alloc.split("=")
                held[loc] += int(qty)
                held_by_customer[customer] += int(qty)
        for lvl in snap.locations:
            assert lvl.on_hand >= 0 and lvl.reserved >= 0 and lvl.committed >= 0, lvl
            assert lvl.reserved == held[lvl.location], (name, lvl, dict(held))
            assert sums[(name, lvl.location)] == [lvl.on_hand, lvl.reserved, lvl.committed], (
                name,
                lvl,
                sums[(name, lvl.location)],
            )
        counters = await engine.redis.hgetall(part.customers(name))
        limit = snap.config.purchase_limit
        for field, value in counters.items():
            kind, customer = field.decode().split(":", 1)
            assert int(value) > 0, "counters at zero are deleted"
            if kind == "u" and limit:
                assert int(value) <= limit, (name, customer, value)
            if kind == "u":
                assert int(value) >= held_by_customer[customer]


@contextmanager
def redis_of_its_own(data_dir: Path) -> Iterator[EmbeddedRedis]:
    """A Redis for one test only, fsyncing every write so a kill loses nothing it acknowledged."""
    server = EmbeddedRedis(data_dir, appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def kill_redis(server: EmbeddedRedis) -> None:
    """SIGKILL the server's process (no shutdown, no final fsync), and wait until it is gone."""
    pid = int(json.loads(server.state_path.read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(pid), 10)


def skus_in_two_partitions(first: str, partitions: int, prefix: str) -> tuple[str, str]:
    """`first` and a SKU named `<prefix>-<n>` that lives in another partition."""
    other = next(
        f"{prefix}-{n}"
        for n in range(500)
        if partition_of(f"{prefix}-{n}", partitions) != partition_of(first, partitions)
    )
    return first, other
