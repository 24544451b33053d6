"""Everything besides the engine's own suites on a real Redis Cluster: scripts after one node lost
its cache, the sync worker, reconcile and restore, the rate limiter, and the embedded cluster's
life cycle through `flashsale services`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from typer.testing import CliRunner

from api.problems import ApiProblem
from api.ratelimit import RateLimiter
from engine.connection import ClusterClient, connect_url
from engine.engine import ReservationEngine
from engine.types import CartLine
from flashsale.cli import app
from flashsale.redis_cluster import PRIMARIES, REPLICAS_PER_PRIMARY
from flashsale.settings import Settings
from sync_worker.db import connect
from sync_worker.reconcile import reconcile_urls
from sync_worker.restore import run_restore
from sync_worker.worker import SyncWorker
from tests.conftest import CLUSTER_PARTITIONS, flush_cluster
from tests.engine_support import check_invariants, make_engine, sku
from tests.worker_support import SKUS, Load, assert_consistent, seed, wait_synced

pytestmark = pytest.mark.slow


@pytest.fixture
async def engine(redis_cluster_url: str) -> AsyncIterator[ReservationEngine]:
    flush_cluster(redis_cluster_url)
    eng = await make_engine(redis_cluster_url, cluster=True)
    yield eng
    await eng.aclose()


@pytest.fixture
def cluster_cfg(cfg: Settings, redis_cluster_url: str) -> Settings:
    flush_cluster(redis_cluster_url)
    return cfg.model_copy(
        update={
            "redis_url": redis_cluster_url,
            "redis_cluster": True,
            "partitions": CLUSTER_PARTITIONS,
        }
    )


async def test_start_loads_every_script_on_every_primary(engine: ReservationEngine) -> None:
    assert isinstance(engine.redis, RedisCluster)
    primaries = engine.redis.get_primaries()
    assert len(primaries) == PRIMARIES
    shas = [engine.scripts[name].sha for name in ("reserve", "commit", "snapshot")]
    for node in primaries:
        exists = await engine.redis.execute_command("SCRIPT EXISTS", *shas, target_nodes=node)
        assert list(exists) == [True] * len(shas), node.name


async def test_one_node_losing_its_script_cache_changes_nothing(
    engine: ReservationEngine,
) -> None:
    names = [f"sku-{i}" for i in range(24)]
    assert len({engine.keys.for_sku(n).number for n in names}) > PRIMARIES
    for n in names:
        await engine.configure_sku(n, sku(5))
    assert isinstance(engine.redis, ClusterClient)
    victim = engine.redis.get_node_from_key(engine.keys.for_sku(names[0]).skus)
    # As after a failover: the promoted replica never saw SCRIPT LOAD.
    await engine.redis.execute_command("SCRIPT FLUSH", target_nodes=victim)
    for i, n in enumerate(names):  # single calls, through the batcher
        await engine.reserve(f"r{i}", "c1", [CartLine(n, 1)])
    await engine.redis.execute_command("SCRIPT FLUSH", target_nodes=victim)
    assert (await engine.get_reservation("r0")).status == "held"  # a pipeline over every node
    await engine.redis.execute_command("SCRIPT FLUSH", target_nodes=victim)
    assert await engine.sweep() == 0  # pipelines per partition
    await engine.redis.execute_command("SCRIPT FLUSH", target_nodes=victim)
    assert (await engine.commit("r0", "o0")).status == "committed"
    assert await engine.ready()
    await check_invariants(engine, names)


async def test_a_cart_over_many_partitions_is_held_and_committed_whole(
    engine: ReservationEngine,
) -> None:
    names = [f"item-{i}" for i in range(10)]
    for n in names:
        await engine.configure_sku(n, sku(3))
    nodes = {engine.redis.get_node_from_key(engine.keys.for_sku(n).skus).name for n in names}  # type: ignore[union-attr]
    assert len(nodes) > 1, "the cart must span primaries"
    held = await engine.reserve("cart", "c1", [CartLine(n, 2) for n in names])
    assert held.status == "held" and len(held.lines) == len(names)
    assert (await engine.commit("cart", "o1")).status == "committed"
    for n in names:
        total = (await engine.inventory(n)).total
        assert (total.reserved, total.committed) == (0, 2)
    await check_invariants(engine, names)


@asynccontextmanager
async def cluster_worker(settings: Settings) -> AsyncIterator[SyncWorker]:
    assert settings.redis_url and settings.database_url
    client = connect_url(settings.redis_url, cluster=True)
    worker = SyncWorker(client, settings.database_url, settings, "w1")
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task
        await client.aclose()


async def test_worker_reconcile_and_restore_on_a_cluster(cluster_cfg: Settings) -> None:
    assert cluster_cfg.redis_url and cluster_cfg.database_url
    engine = ReservationEngine.from_settings(cluster_cfg)
    await engine.start()
    async with cluster_worker(cluster_cfg):
        await seed(engine)
        load, stop = Load(engine, seed_=11), asyncio.Event()
        task = asyncio.create_task(load.run(stop))
        await asyncio.sleep(1.0)
        stop.set()
        await task
        await engine.reserve("kept", "ann", [CartLine("apple", 2), CartLine("damson", 1)], 600)
        await asyncio.sleep(2.1)  # every short hold of the load is due: the reads reclaim them
        before = await engine.get_reservation("kept")
        levels = {s: (await engine.inventory(s)).locations for s in SKUS}
        await wait_synced(engine.redis, engine.keys)  # type: ignore[arg-type]
    assert load.ok > 20
    await assert_consistent(engine, cluster_cfg)

    flush_cluster(cluster_cfg.redis_url)  # the cluster lost everything
    async with await connect(cluster_cfg.database_url) as conn:
        report, _ = await run_restore(engine.redis, conn, cluster_cfg, force=False)
    assert report.warnings == [] and report.skus == len(SKUS)
    checked = await reconcile_urls(
        CLUSTER_PARTITIONS,
        cluster_cfg.redis_url,
        cluster_cfg.database_url,
        deep=True,
        cluster=True,
    )
    assert checked.drifts == []
    await engine.aclose()
    engine = ReservationEngine.from_settings(cluster_cfg)
    await engine.start()
    assert (await engine.get_reservation("kept")).lines == before.lines
    assert {s: (await engine.inventory(s)).locations for s in SKUS} == levels
    await engine.aclose()


async def test_rate_limits_count_on_any_slot(engine: ReservationEngine) -> None:
    limiter = RateLimiter(engine.redis, window_seconds=60)
    for subject in ("key-a", "key-b", "key-c", "key-d"):  # different slots
        for _ in range(3):
            await limiter.hit("api_key", subject, limit=3)
        with pytest.raises(ApiProblem) as refused:
            await limiter.hit("api_key", subject, limit=3)
        assert refused.value.status == 429


async def test_concurrent_rate_limit_hits_across_slots_count_exactly(
    engine: ReservationEngine,
) -> None:
    """One batch holds counters of many slots: each slot's share goes in a MULTI of its own."""
    limiter = RateLimiter(engine.redis, window_seconds=60)
    subjects = [f"buyer-{n}" for n in range(12)]

    async def outcome(subject: str) -> bool:
        try:
            await limiter.hit("customer", subject, limit=5)
        except ApiProblem:
            return False
        return True

    tries = [s for s in subjects for _ in range(8)]
    results = await asyncio.gather(*(outcome(s) for s in tries))
    passed = dict.fromkeys(subjects, 0)
    for subject, ok in zip(tries, results, strict=True):
        passed[subject] += ok
    assert passed == dict.fromkeys(subjects, 5)


def test_services_up_and_down_run_a_local_cluster(tmp_path: Path) -> None:
    env = {
        "FLASHSALE_EMBEDDED_CLUSTER": "true",
        "FLASHSALE_DATA_DIR": str(tmp_path / "data"),
        "FLASHSALE_REDIS_URL": "",
        "FLASHSALE_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
    }
    runner = CliRunner()
    up = runner.invoke(app, ["services", "up"], env=env)
    assert up.exit_code == 0, up.output
    url = next(w for w in up.output.split() if w.startswith("redis://"))
    try:
        with redis.cluster.RedisCluster.from_url(url) as client:
            nodes = client.get_nodes()
            assert len(nodes) == PRIMARIES * (1 + REPLICAS_PER_PRIMARY)
            assert len(client.get_primaries()) == PRIMARIES
            for node in nodes:
                config = client.config_get("appendonly", target_nodes=node)
                assert config["appendonly"] == "yes"
        again = runner.invoke(app, ["services", "up"], env=env)  # already up: same URL
        assert url in again.output
    finally:
        down = runner.invoke(app, ["services", "down"], env=env)
    assert down.exit_code == 0 and "redis-cluster" in down.output, down.output
    with pytest.raises(redis.ConnectionError), redis.Redis.from_url(url) as probe:
        probe.ping()
