"""`flashsale bench --quick`: correctness of every design on a small sell-out, never a speed."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.local_stack import served_api
from flashsale.settings import Settings
from loadtests.bench.report import markdown, write
from loadtests.bench.runner import SELLING_DESIGNS, BenchConfig, run_bench

OURS = ("redis-limit", "engine", "engine-http")


async def test_quick_bench_sells_exactly_the_stock_in_every_design(
    settings: Settings, redis_url: str, pg_database_url: str, tmp_path: Path
) -> None:
    cfg = BenchConfig(
        units=200,
        buyers=20,
        soldout_seconds=1.0,
        designs=SELLING_DESIGNS,  # `sync` has its own test: tests/test_worker_throughput.py
        memory_holds=200,
        latency_calls=200,
        redis_url=redis_url,
        database_url=pg_database_url,
        settings=settings,
        start_api=served_api,
    )
    report = await run_bench(cfg, lambda _: None)

    assert [r.design for r in report.results] == list(SELLING_DESIGNS)
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
    # Figures, not speeds: each probe ran to the end (a unit never re-offered would time out).
    assert report.latency is not None
    assert report.latency.sequential_calls == 200 and report.latency.reoffers == 5
    # engine-http measured the API's CPU per request for the floor, reserve and refusal.
    cpu = report.api_cpu
    assert cpu is not None and cpu.trivial_requests > 0, cpu
    assert min(cpu.trivial_us, cpu.reserve_us, cpu.refusal_us) > 0, cpu
    # ... and a reserve's latency at light load over HTTP, one client on a SKU of its own.
    assert cpu.light_load_calls == 100 and 0 < cpu.light_load_p50_ms <= cpu.light_load_p99_ms
    json_path, md_path = write(report, tmp_path)
    assert json_path.exists() and md_path.read_text().endswith(markdown(report))
    assert orjson.loads(json_path.read_bytes())["api_cpu"] == cpu.as_dict()
    assert "API CPU per request" in markdown(report)
    assert "engine-http reserve at light load" in markdown(report)


def test_bench_command_refuses_an_unknown_design() -> None:
    outcome = CliRunner().invoke(app, ["bench", "--quick", "--designs", "redis-limit,nope"])
    assert outcome.exit_code == 1
    assert "unknown design(s) nope" in outcome.output
