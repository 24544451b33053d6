"""Runs the chosen designs one after another on the same workload and collects their results."""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadtests.bench import (
    cluster_design,
    http_design,
    latency,
    memory,
    pg_designs,
    redis_cpu,
    redis_designs,
    script_cost,
    sync_design,
    sync_lag,
    zero_loss,
)
from loadtests.bench.workload import Attempt, DesignResult, Workload, run_phases, summarize
from sync_worker.settings import WorkerSettings

DESIGNS = (
    "redis-limit",
    "engine",
    zero_loss.DESIGN,  # engine-ack: zero-loss mode; its Redis needs a replica
    "engine-http",
    "pg-occ",
    "pg-conditional",
    "sync",
)
SELLING_DESIGNS = DESIGNS[:-1]  # `sync` sells nothing: it times the worker on a backlog
SYNC_EVENTS_PER_UNIT = 10
# Their selling phase is metered by Redis' own accounting.
REDIS_SCRIPT_DESIGNS = ("redis-limit", "engine", zero_loss.DESIGN)


@dataclass(frozen=True)
class BenchConfig:
    units: int
    buyers: int
    soldout_seconds: float
    designs: tuple[str, ...]
    memory_holds: int
    latency_calls: int
    redis_url: str
    database_url: str
    settings: WorkerSettings  # the engine designs read its engine part; `sync` its batch size
    api_workers: int = http_design.API_WORKERS
    # How engine-http starts its API; the command line passes `flashsale serve` in child processes.
    start_api: http_design.StartApi | None = None
    sync_events: int | None = None  # None: SYNC_EVENTS_PER_UNIT per unit
    # A Redis Cluster (any node): `engine` then runs with its rows on the cluster (cluster_design).
    cluster_url: str | None = None

    def __post_init__(self) -> None:
        if self.cluster_url and "engine" not in self.designs:
            raise ValueError("the cluster rows are compared with `engine`: run it too")

    @property
    def sync_backlog(self) -> int:
        return self.sync_events or self.units * SYNC_EVENTS_PER_UNIT


@dataclass
class BenchReport:
    config: dict[str, Any]
    results: list[DesignResult] = field(default_factory=list)
    memory: memory.MemoryResult | None = None
    latency: latency.LatencyResult | None = None
    sync: sync_design.SyncResult | None = None
    script_cpu: redis_cpu.CommitReleaseCpu | None = None
    reserve_cost: script_cost.ReserveCost | None = None  # where a reserve's Redis time goes
    bench_peak_rss_mib: float = 0.0
    api_cpu: http_design.ApiCpu | None = None  # engine-http's API CPU per request
    cluster: cluster_design.ClusterReport | None = None
    sync_lag: sync_lag.SyncLag | None = None  # engine-http's sync worker: how far behind
    zero_loss: zero_loss.ZeroLossCost | None = None  # engine-ack against engine


def _attempt_factory(
    design: str, cfg: BenchConfig, workload: Workload, run_id: str
) -> contextlib.AbstractAsyncContextManager[Attempt]:
    if design == "redis-limit":
        return redis_designs.redis_limit(cfg.settings, cfg.redis_url, workload, run_id)
    if design == "engine":
        return redis_designs.in_process_engine(cfg.settings, cfg.redis_url, workload, run_id)
    if design == zero_loss.DESIGN:
        settings = zero_loss.ack_settings(cfg.settings)
        return redis_designs.in_process_engine(settings, cfg.redis_url, workload, run_id)
    if design == "pg-occ":
        return pg_designs.pg_occ(cfg.database_url, workload, run_id)
    if design == "pg-conditional":
        return pg_designs.pg_conditional(cfg.database_url, workload, run_id)
    raise ValueError(f"unknown design {design!r}")


async def _levels(design: str, cfg: BenchConfig, sku: str) -> tuple[int, int]:
    if design.startswith("pg-"):
        return await pg_designs.pg_levels(cfg.database_url, sku)
    return await redis_designs.redis_levels(cfg.settings, cfg.redis_url, [sku])


def _rss_mib() -> float:
    # ru_maxrss is the whole process' peak so far (KiB on Linux): designs run in order, so the
    # figure of a design is the peak up to and including it.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_design(
    design: str, cfg: BenchConfig, run_id: str
) -> tuple[DesignResult, http_design.ApiCpu | None, sync_lag.SyncLag | None]:
    workload = Workload(
        units=cfg.units,
        buyers=cfg.buyers,
        soldout_seconds=cfg.soldout_seconds,
        sku=f"{run_id}-{design}",
    )
    note = ""
    api_cpu = None
    lag = None
    spent: redis_cpu.ScriptCpu | None = None
    if design == "engine-http":
        if cfg.start_api is None:
            raise ValueError("engine-http needs BenchConfig.start_api to start the API")
        # A sync worker runs beside the API, as in a sale; the phase gets Redis to itself.
        async with sync_lag.worker_beside(cfg.settings, cfg.redis_url, cfg.database_url) as lag:
            selling, soldout, left, rss, note, api_cpu = await http_design.run(
                cfg.settings,
                lag.redis_url,
                cfg.database_url,
                workload,
                run_id,
                cfg.start_api,
                cfg.api_workers,
            )
            _, store_oversold = await redis_designs.redis_levels(
                cfg.settings, lag.redis_url, [workload.sku]
            )
    else:
        async with _attempt_factory(design, cfg, workload, run_id) as attempt:

            async def available() -> int:
                return (await _levels(design, cfg, workload.sku))[0]

            meter = None
            if design in REDIS_SCRIPT_DESIGNS:
                spent = redis_cpu.ScriptCpu()
                meter = redis_cpu.metered(cfg.redis_url, spent)
            selling, soldout, left = await run_phases(workload, attempt, available, meter)
        rss = _rss_mib()
        _, store_oversold = await _levels(design, cfg, workload.sku)
    result = summarize(design, workload, selling, soldout, left, store_oversold)
    result.peak_rss_mib = rss
    result.notes = note
    if spent is not None and spent.calls and selling.sold:
        result.redis_us_per_reserve = spent.usec / selling.sold
        result.mean_batch = selling.sold / spent.calls
    return result, api_cpu, lag if lag is not None and lag.measured else None


async def run_bench(cfg: BenchConfig, progress: Callable[[str], None]) -> BenchReport:
    run_id = f"bench{int(time.time())}"
    report = BenchReport(
        config={
            "units": cfg.units,
            "buyers": cfg.buyers,
            "soldout_seconds": cfg.soldout_seconds,
            "designs": list(cfg.designs),
            "memory_holds": cfg.memory_holds,
            "latency_calls": cfg.latency_calls,
            "partitions": cfg.settings.partitions,
            "api_workers": cfg.api_workers,
            "cluster": cfg.cluster_url is not None,
            "run_id": run_id,
        }
    )
    replicas = None
    if zero_loss.DESIGN in cfg.designs:
        replicas = await zero_loss.require_replica(cfg.redis_url)
        report.config["replicas"] = replicas
    if cfg.latency_calls:
        # First, while Redis and this process are fresh: "light load" should mean it.
        progress(f"measuring light-load latency ({cfg.latency_calls} calls) and re-offer time…")
        report.latency = await latency.measure(
            cfg.settings, cfg.redis_url, cfg.latency_calls, run_id
        )
    for design in cfg.designs:
        if design == "sync":
            report.sync = await sync_design.measure(
                cfg.settings, cfg.redis_url, cfg.database_url, cfg.sync_backlog, progress
            )
            continue
        progress(f"running {design} ({cfg.units} units, {cfg.buyers} buyers)…")
        if design == "engine" and cfg.cluster_url:
            # The engine row and the cluster's rows, measured alike and back to back.
            base = Workload(cfg.units, cfg.buyers, cfg.soldout_seconds, run_id)
            rows, report.cluster = await cluster_design.measure(
                cfg.settings, cfg.redis_url, cfg.cluster_url, base, progress
            )
            report.results += rows
            continue
        result, api_cpu, lag = await run_design(design, cfg, run_id)
        report.results.append(result)
        report.api_cpu = api_cpu or report.api_cpu
        report.sync_lag = lag or report.sync_lag
    engine = next((r for r in report.results if r.design == "engine"), None)
    if engine is not None and engine.attempts_per_s:
        for result in report.results:
            result.ratio_to_engine = result.attempts_per_s / engine.attempts_per_s
    if replicas is not None:
        report.zero_loss = zero_loss.cost(report.results, replicas, cfg.settings)
    if "engine" in cfg.designs:
        progress("metering Redis CPU per commit and per release…")
        report.script_cpu = await redis_cpu.measure_commit_release(
            cfg.settings, cfg.redis_url, run_id, min(redis_cpu.PROBE_HOLDS, max(2, cfg.units))
        )
        progress("timing each part of a reserve inside Redis…")
        report.reserve_cost = await script_cost.measure(
            cfg.settings, cfg.redis_url, run_id, min(script_cost.RESERVES, max(200, cfg.units))
        )
    if cfg.memory_holds:
        progress(f"measuring Redis memory over {cfg.memory_holds} holds…")
        report.memory = await memory.measure(cfg.settings, cfg.redis_url, cfg.memory_holds, run_id)
    report.bench_peak_rss_mib = _rss_mib()
    return report
