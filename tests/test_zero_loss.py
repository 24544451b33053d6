"""Zero-loss mode on a real primary and replica, both started here: a write is answered only
once the replica has it; with the replica stopped, writes answer NotReplicated within the
timeout, reads do not wait, and the same request retried once the replica is back replays
(nothing held twice)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis.asyncio

from api.problems import engine_problem
from engine import CartLine, ReservationEngine
from engine import errors as e
from engine.connection import ClusterClient
from flashsale.redis_replica import ChildRedis
from flashsale.settings import Settings
from tests.conftest import flush_cluster
from tests.engine_support import check_invariants, make_engine, sku

TIMEOUT_MS = 300


@dataclass
class Pair:
    primary: ChildRedis
    replica: ChildRedis


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    primary = ChildRedis(tmp_path / "primary")
    primary.start()
    replica = ChildRedis(tmp_path / "replica", replica_of=primary.url)
    try:
        replica.start()
        yield Pair(primary, replica)
    finally:
        replica.stop()
        primary.stop()


async def _engine(pair: Pair, timeout_ms: int) -> ReservationEngine:
    settings = Settings(
        redis_url=pair.primary.url,
        database_url=None,
        fencing=False,  # no sync worker here: the engine adopts its fresh partitions
        partitions=2,
        redis_min_replicas_ack=1,
        redis_replicas_ack_timeout_ms=timeout_ms,
    )
    engine = ReservationEngine(redis.asyncio.Redis.from_url(pair.primary.url), settings)
    await engine.start()
    await engine.configure_sku("tee", sku(10))
    return engine


@pytest.fixture
async def engine(pair: Pair) -> AsyncIterator[ReservationEngine]:
    engine = await _engine(pair, TIMEOUT_MS)
    try:
        yield engine
    finally:
        await engine.aclose()


async def _on_replica(pair: Pair, engine: ReservationEngine, rid: str, sku_: str) -> bool:
    part = await engine.placements.partition(sku_)
    async with redis.asyncio.Redis.from_url(pair.replica.url) as replica:
        return bool(await replica.exists(part.reservation(rid)))


async def test_a_write_is_answered_only_once_the_replica_has_it(pair: Pair) -> None:
    engine = await _engine(pair, timeout_ms=5_000)
    try:
        pair.replica.pause()
        asyncio.get_running_loop().call_later(0.5, pair.replica.resume)
        started = time.monotonic()
        await engine.reserve("r1", "c1", [CartLine("tee", 2)])
        assert time.monotonic() - started >= 0.45  # it waited for the replica to come back
        assert await _on_replica(pair, engine, "r1", "tee")
        # With the replica running, each acknowledged write is on it the moment it returns.
        for n in range(8):
            await engine.reserve(f"q{n}", f"c{n}", [CartLine("tee", 1)])
            assert await _on_replica(pair, engine, f"q{n}", "tee")
    finally:
        await engine.aclose()


async def test_a_replica_gone_makes_writes_fail_in_time_and_a_retry_replays(
    pair: Pair, engine: ReservationEngine
) -> None:
    await engine.reserve("kept", "c0", [CartLine("tee", 1)])
    pair.replica.pause()
    try:
        started = time.monotonic()
        with pytest.raises(e.NotReplicated) as refused:
            await engine.reserve("r1", "c1", [CartLine("tee", 3)])
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + 1.0
        assert (refused.value.replicas, refused.value.required) == (0, 1)
        assert refused.value.partition == (await engine.placements.partition("tee")).number
        assert "retry the same request" in str(refused.value)
        with pytest.raises(e.NotReplicated):
            await engine.commit("kept", "order-1")
        # Reads need no replica: they answer at once.
        started = time.monotonic()
        snap = await engine.inventory("tee")
        assert time.monotonic() - started < TIMEOUT_MS / 1000
        # The primary applied both: it is their survival that is not known.
        assert snap.locations[0].reserved == 1 + 3 - 1 and snap.locations[0].committed == 1
    finally:
        pair.replica.resume()
    assert await asyncio.to_thread(_wait_linked, pair.replica)
    retried = await engine.reserve("r1", "c1", [CartLine("tee", 3)])
    committed = await engine.commit("kept", "order-1")
    assert retried.status == "held" and committed.status == "committed"
    level = (await engine.inventory("tee")).locations[0]
    assert (level.reserved, level.committed, level.on_hand) == (3, 1, 10)  # nothing twice
    assert await _on_replica(pair, engine, "r1", "tee")
    await check_invariants(engine, ["tee"])


async def test_one_wait_per_script_call_and_none_for_reads(
    pair: Pair, engine: ReservationEngine
) -> None:
    await engine.configure_sku("hoodie", sku(1_000))
    await engine.redis.config_resetstat()
    await asyncio.gather(
        *(engine.reserve(f"b{n}", f"c{n}", [CartLine("hoodie", 1)]) for n in range(200))
    )
    for _ in range(5):
        await engine.inventory("hoodie")
    stats = await engine.redis.info("commandstats")
    evalsha, wait = stats["cmdstat_evalsha"]["calls"], stats["cmdstat_wait"]["calls"]
    snapshots = 5
    # Every reserve batch is one script call with one WAIT behind it; reads have none.
    assert wait == evalsha - snapshots, stats
    assert wait < 200  # batched: fewer WAITs than requests
    assert (await engine.inventory("hoodie")).locations[0].reserved == 200


async def test_the_sweeper_waits_once_per_pipeline_and_survives_a_replica_gone(
    pair: Pair, engine: ReservationEngine
) -> None:
    part = engine.keys.for_sku("tee")
    skus = ["tee", *[f"s{n}" for n in range(40) if engine.keys.for_sku(f"s{n}") == part][:4]]
    for n, name in enumerate(skus):
        if name != "tee":
            await engine.configure_sku(name, sku(10))
        await engine.reserve(f"short{n}", f"c{n}", [CartLine(name, 1)], ttl_seconds=1)
    engine.clock_offset_ms = 5_000
    pair.replica.pause()
    try:
        with pytest.raises(e.NotReplicated):
            await engine.sweep()
        stop = asyncio.Event()
        sweeper = asyncio.create_task(engine.run_sweeper(stop, interval=0.05))
        await asyncio.sleep(TIMEOUT_MS / 1000 * 2)
        assert not sweeper.done()  # waited out like an outage, not ended
    finally:
        pair.replica.resume()
    assert await asyncio.to_thread(_wait_linked, pair.replica)
    stop.set()
    await sweeper
    await engine.redis.config_resetstat()
    assert await engine.sweep() == 0  # the first pass reclaimed them on the primary
    stats = await engine.redis.info("commandstats")
    evalsha, wait = stats["cmdstat_evalsha"]["calls"], stats["cmdstat_wait"]["calls"]
    # The pass ran one `expire` per SKU, pipelined, with a single WAIT behind them all (the
    # other calls are the cart recovery's, one WAIT each).
    assert wait == evalsha - (len(skus) - 1), stats
    for name in skus:
        assert (await engine.inventory(name)).locations[0].reserved == 0
    await check_invariants(engine, skus)


def _wait_linked(replica: ChildRedis) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if replica.linked():
            return True
        time.sleep(0.05)
    return False


def test_the_api_answers_not_replicated_with_503_and_retry_after() -> None:
    response = engine_problem(e.NotReplicated(partition=1, replicas=0, required=1))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    body = orjson.loads(response.body)
    assert (body["code"], body["title"]) == ("not_replicated", "Not replicated")
    assert (body["partition"], body["replicas"], body["required"]) == (1, 0, 1)


async def test_a_flushed_script_cache_is_reloaded_and_the_call_still_waits(
    pair: Pair, engine: ReservationEngine
) -> None:
    await engine.redis.script_flush()  # as a restarted or promoted server has none
    await engine.redis.config_resetstat()
    await engine.reserve("r1", "c1", [CartLine("tee", 1)])
    stats = await engine.redis.info("commandstats")
    assert stats["cmdstat_wait"]["calls"] == 2  # the refused round, then the one that ran
    assert await _on_replica(pair, engine, "r1", "tee")


@pytest.mark.slow
async def test_on_a_cluster_the_wait_goes_to_the_primary_of_the_call(
    redis_cluster_url: str,
) -> None:
    flush_cluster(redis_cluster_url)
    engine = await make_engine(
        redis_cluster_url, cluster=True, fencing=False, redis_min_replicas_ack=1
    )
    try:
        assert isinstance(engine.redis, ClusterClient)
        names = [f"sku-{i}" for i in range(12)]
        for name in names:
            await engine.configure_sku(name, sku(5))
        victim = engine.redis.get_node_from_key(engine.keys.for_sku(names[0]).skus)
        assert victim is not None
        primaries = engine.redis.get_primaries()
        await engine.redis.config_resetstat(target_nodes=primaries)
        await engine.redis.execute_command("SCRIPT FLUSH", target_nodes=victim)
        on_victim = [n for n in names if _owner(engine, n) == victim]
        for i, name in enumerate(on_victim):
            await engine.reserve(f"r{i}", "c1", [CartLine(name, 1)])
        stats = await engine.redis.info("commandstats", target_nodes=primaries)
        waits = {node: info.get("cmdstat_wait", {}).get("calls", 0) for node, info in stats.items()}
        evalshas = {
            node: info.get("cmdstat_evalsha", {}).get("calls", 0) for node, info in stats.items()
        }
        # Every WAIT went where its script ran: none on the other primaries.
        assert waits[victim.name] >= len(on_victim), waits
        assert all(waits[n] <= evalshas[n] for n in waits), (waits, evalshas)
        assert sum(waits.values()) == waits[victim.name], waits
        await engine.redis.execute_command("SCRIPT FLUSH", target_nodes=victim)
        engine.clock_offset_ms = 3_600_000 * 2
        assert await engine.sweep() == len(on_victim)  # a pipeline per partition, one WAIT each
        await check_invariants(engine, names)
    finally:
        await engine.aclose()


def _owner(engine: ReservationEngine, name: str) -> object:
    assert isinstance(engine.redis, ClusterClient)
    return engine.redis.get_node_from_key(engine.keys.for_sku(name).skus)
