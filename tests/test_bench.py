"""`flashsale bench --quick`: correctness of every design on a small sell-out, never a speed."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.commands.bench import bench_settings
from flashsale.local_stack import served_api
from flashsale.redis_cluster import PRIMARIES, REPLICAS_PER_PRIMARY
from flashsale.redis_replica import ChildRedis
from flashsale.settings import Settings
from loadtests.bench import script_cost, zero_loss
from loadtests.bench.report import markdown, write
from loadtests.bench.runner import SELLING_DESIGNS, BenchConfig, run_bench
from tests.conftest import CLUSTER_PARTITIONS, flush_cluster

OURS = ("redis-limit", "engine", "engine-http")
ON_ONE_NODE = tuple(d for d in SELLING_DESIGNS if d != zero_loss.DESIGN)


async def test_quick_bench_sells_exactly_the_stock_in_every_design(
    settings: Settings,
    redis_url: str,
    pg_database_url: str,
    tmp_path: Path,
    redis_client: Redis,
) -> None:
    cfg = BenchConfig(
        units=200,
        buyers=20,
        soldout_seconds=1.0,
        # `sync` has its own test (tests/test_worker_throughput.py), engine-ack one below: it
        # needs a Redis with a replica.
        designs=ON_ONE_NODE,
        memory_holds=200,
        latency_calls=200,
        redis_url=redis_url,
        database_url=pg_database_url,
        settings=settings,
        start_api=served_api,
    )
    report = await run_bench(cfg, lambda _: None)

    assert [r.design for r in report.results] == list(ON_ONE_NODE)
    for result in report.results:
        assert result.sold == 200, result
        assert result.oversold == 0, result
        if result.design in OURS:
            assert result.false_refusals == 0, result
            assert result.available_after_selling == 0, result
        if result.design in ("redis-limit", "engine"):
            # Redis' own accounting of the selling phase: some script time, at least one call.
            assert result.redis_us_per_reserve is not None and result.redis_us_per_reserve > 0
            assert result.mean_batch is not None and result.mean_batch > 0
        else:
            assert result.redis_us_per_reserve is None
    assert report.memory is not None and report.memory.holds == 200
    cpu = report.script_cpu
    assert cpu is not None and cpu.commits == 100 and cpu.releases == 100
    assert cpu.us_per_commit > 0 and cpu.us_per_release > 0
    # Every part of a reserve was timed inside Redis, and the probe left none of its keys.
    cost = report.reserve_cost
    assert cost is not None and set(cost.parts_us) == set(script_cost.PARTS), cost
    assert set(cost.alternatives_us) == set(script_cost.ALTERNATIVES), cost
    assert min(cost.parts_us.values()) > 0 and min(cost.alternatives_us.values()) > 0, cost
    assert cost.whole_us > 0 and cost.batch >= 1, cost
    assert await redis_client.keys(f"{script_cost.TAG}:*") == []
    # Figures, not speeds: each probe ran to the end (a unit never re-offered would time out).
    assert report.latency is not None
    assert report.latency.sequential_calls == 200 and report.latency.reoffers == 5
    # engine-http measured the API's CPU per request for the floor, reserve and refusal.
    cpu = report.api_cpu
    assert cpu is not None and cpu.trivial_requests > 0, cpu
    assert min(cpu.trivial_us, cpu.reserve_us, cpu.refusal_us) > 0, cpu
    assert min(cpu.driver_trivial_us, cpu.driver_reserve_us, cpu.driver_refusal_us) > 0, cpu
    # ... and a reserve's latency at light load over HTTP, one client on a SKU of its own.
    assert cpu.light_load_calls == 100 and 0 < cpu.light_load_p50_ms <= cpu.light_load_p99_ms
    json_path, md_path = write(report, tmp_path)
    assert json_path.exists() and md_path.read_text().endswith(markdown(report))
    assert orjson.loads(json_path.read_bytes())["api_cpu"] == cpu.as_dict()
    assert orjson.loads(json_path.read_bytes())["reserve_cost"]["parts_us"] == cost.parts_us
    assert "Where a reserve's Redis time goes" in markdown(report)
    # engine-http ran with a sync worker beside the API, which synced every unit it sold.
    lag = report.sync_lag
    assert lag is not None and lag.samples > 0 and lag.ledger_rows >= 200, lag
    assert orjson.loads(json_path.read_bytes())["sync_lag"] == lag.as_dict()
    assert "oldest unsynced event at most" in markdown(report)
    assert "API CPU per request" in markdown(report)
    assert "engine-http reserve at light load" in markdown(report)


async def test_engine_ack_prices_zero_loss_mode_against_engine_on_one_primary_and_replica(
    settings: Settings, pg_database_url: str, tmp_path: Path
) -> None:
    primary = ChildRedis(tmp_path / "primary")
    replica = ChildRedis(tmp_path / "replica", replica_of=primary.start())
    try:
        replica.start()
        cfg = BenchConfig(
            units=200,
            buyers=20,
            soldout_seconds=0.5,
            designs=("engine", zero_loss.DESIGN),
            memory_holds=0,
            latency_calls=0,
            redis_url=primary.url,
            database_url=pg_database_url,
            settings=settings,
        )
        report = await run_bench(cfg, lambda _: None)
    finally:
        replica.stop()
        primary.stop()
    engine, ack = report.results
    assert (engine.design, ack.design) == ("engine", "engine-ack")
    for row in (engine, ack):
        assert (row.sold, row.oversold, row.false_refusals) == (200, 0, 0), row
        assert row.available_after_selling == 0 and row.p50_ms <= row.p99_ms, row
    assert ack.ratio_to_engine == pytest.approx(ack.attempts_per_s / engine.attempts_per_s)
    cost = report.zero_loss
    assert cost is not None and cost.replicas == 1 and cost.replicas_ack == 1
    assert (cost.ack_per_s, cost.engine_per_s) == (ack.attempts_per_s, engine.attempts_per_s)
    assert (cost.ack_p99_ms, cost.engine_p99_ms) == (ack.p99_ms, engine.p99_ms)
    json_path, _ = write(report, tmp_path)
    written = orjson.loads(json_path.read_bytes())
    assert written["zero_loss"] == cost.as_dict() and written["config"]["replicas"] == 1
    assert "zero-loss mode (engine-ack" in markdown(report)


async def test_engine_ack_refuses_a_redis_without_a_replica(
    settings: Settings, redis_url: str, pg_database_url: str
) -> None:
    cfg = BenchConfig(
        units=10,
        buyers=2,
        soldout_seconds=0.1,
        designs=(zero_loss.DESIGN,),
        memory_holds=0,
        latency_calls=0,
        redis_url=redis_url,
        database_url=pg_database_url,
        settings=settings,
    )
    with pytest.raises(zero_loss.NoReplica, match="has 0: attach one"):
        await run_bench(cfg, lambda _: None)


def test_bench_command_refuses_an_unknown_design() -> None:
    outcome = CliRunner().invoke(app, ["bench", "--quick", "--designs", "redis-limit,nope"])
    assert outcome.exit_code == 1
    assert "unknown design(s) nope" in outcome.output


@pytest.mark.slow
def test_bench_cluster_adds_the_cluster_rows_and_ratios_to_the_json(
    redis_url: str, redis_cluster_url: str, pg_database_url: str, tmp_path: Path
) -> None:
    flush_cluster(redis_cluster_url)
    outcome = CliRunner().invoke(
        app,
        [
            "bench",
            *("--designs", "engine", "--units", "120", "--buyers", "12"),
            *("--soldout-seconds", "0.2", "--memory-holds", "0", "--latency-calls", "0"),
            *("--redis-url", redis_url, "--database-url", pg_database_url),
            *("--cluster-url", redis_cluster_url, "--reports-dir", str(tmp_path)),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    (json_path,) = tmp_path.glob("bench-*.json")
    report = orjson.loads(json_path.read_bytes())
    rows = {r["design"]: r for r in report["results"]}
    assert list(rows) == ["engine", "engine@cluster", "engine-many", "engine-many@cluster"]
    for row in rows.values():
        assert (row["sold"], row["oversold"], row["false_refusals"]) == (120, 0, 0), row
        assert row["available_after_selling"] == 0, row
        assert row["redis_us_per_reserve"] > 0, row
    cluster = report["cluster"]
    assert cluster["primaries"] == PRIMARIES and cluster["partitions"] == CLUSTER_PARTITIONS
    assert cluster["many_skus"] == 12  # one SKU per buyer at most
    engine, hot = rows["engine"], rows["engine@cluster"]
    many, many_c = rows["engine-many"], rows["engine-many@cluster"]
    assert cluster["hot_ratio"] == pytest.approx(hot["attempts_per_s"] / engine["attempts_per_s"])
    assert cluster["many_ratio"] == pytest.approx(many_c["attempts_per_s"] / many["attempts_per_s"])
    # Every node was metered in each row; the hot SKU's scripts all ran on one primary.
    assert cluster["replicas"] == PRIMARIES * REPLICAS_PER_PRIMARY
    for row, cpu in cluster["cpu"].items():
        assert len(cpu["nodes"]) == (PRIMARIES + cluster["replicas"] if "@" in row else 1), row
        assert cpu["client_cpu_s"] > 0, row
        assert sum(n["usec"] for n in cpu["nodes"] if n["role"] == "primary") > 0, row
    hot_calls = sorted(n["calls"] for n in cluster["cpu"]["engine@cluster"]["nodes"])
    assert hot_calls[:-1] == [0] * (len(hot_calls) - 1) and hot_calls[-1] > 0
    within, across = cluster["carts"]
    assert (within["partitions"], across["partitions"]) == (1, 2)
    for cart in (within, across):
        assert cart["carts"] > 0 and cart["carts_per_s"] > 0 and cart["p99_ms"] > 0, cart
    # A cart across two partitions costs a script call per partition for reserve and commit.
    assert across["evalsha_per_cart"] > within["evalsha_per_cart"]
    assert "Redis Cluster (3 primaries + 3 replicas, 16 partitions" in outcome.output


def test_the_bench_takes_its_own_restarted_redis_as_it_is(tmp_path: Path) -> None:
    settings = Settings(redis_url=None, database_url=None, data_dir=tmp_path)
    # Its own Redis, restarted from its AOF by an earlier run, has no worker to verify it.
    assert bench_settings(settings, None, None).fencing is False
    # A Redis named on the command line keeps the fencing it was given.
    assert bench_settings(settings, "redis://127.0.0.1:1/0", None).fencing is True
