"""The bench's figures as rows, notes, JSON and Markdown (the console table is the command's)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench import script_cost
from loadtests.bench.memory import COMPARABLE_HOLDS
from loadtests.bench.runner import BenchReport
from loadtests.bench.zero_loss import lines as zero_loss_lines

REPORTS_DIR = Path("loadtests/reports")
COLUMNS = (
    "design",
    "sold",
    "oversold",
    "false refusals",
    "attempts/s",
    "p50 ms",
    "p99 ms",
    "p999 ms",
    "sold-out refusals/s",
    "Redis µs/reserve",
    "batch",
    "× engine",
    "peak RSS MiB",
)


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}"


def rows(report: BenchReport) -> list[list[str]]:
    return [
        [
            r.design,
            str(r.sold),
            str(r.oversold),
            str(r.false_refusals),
            f"{r.attempts_per_s:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.p999_ms:.2f}",
            f"{r.soldout_refusals_per_s:,.0f}",
            "—" if r.redis_us_per_reserve is None else f"{r.redis_us_per_reserve:.1f}",
            "—" if r.mean_batch is None else f"{r.mean_batch:.1f}",
            "—" if r.ratio_to_engine is None else f"{r.ratio_to_engine:.2f}",
            f"{r.peak_rss_mib:.0f}",
        ]
        for r in report.results
    ]


def memory_line(report: BenchReport) -> str:
    m = report.memory
    if m is None:
        return "Redis memory: not measured"
    line = (
        f"Redis memory over {m.holds:,} one-line holds: {m.bytes_per_active_hold:,.0f} B per "
        f"active hold, {m.bytes_per_finished_reservation:,.0f} B per finished (released) "
        "reservation in its retention window; without their stream events (trimmed once the "
        f"sync worker has them): {m.bytes_per_active_hold_without_events:,.0f} B and "
        f"{m.bytes_per_finished_reservation_without_events:,.0f} B"
    )
    if m.holds < COMPARABLE_HOLDS:
        line += (
            f" (a small sample: not comparable with a full run's {COMPARABLE_HOLDS:,} holds, "
            "where fixed costs spread thinner)"
        )
    return line


def latency_lines(report: BenchReport) -> list[str]:
    lines = []
    lt = report.latency
    if lt is not None:
        lines.append(
            f"engine reserve at light load (one client, sequential, {lt.sequential_calls:,} "
            f"calls): p50 {lt.sequential_p50_ms:.3f} ms, p99 {lt.sequential_p99_ms:.3f} ms, "
            f"p999 {lt.sequential_p999_ms:.3f} ms"
        )
    c = report.api_cpu
    if c is not None and c.light_load_calls:
        lines.append(
            f"engine-http reserve at light load (one client, sequential, {c.light_load_calls:,} "
            f"calls): p50 {c.light_load_p50_ms:.3f} ms, p99 {c.light_load_p99_ms:.3f} ms"
        )
    if lt is not None:
        lines.append(
            f"re-offer after a release by another process while buyers hammer the sold-out SKU "
            f"({lt.reoffers} rounds, sold-out recheck {lt.recheck_ms} ms): p50 "
            f"{lt.reoffer_p50_ms:.1f} ms, max {lt.reoffer_max_ms:.1f} ms"
        )
    return lines


def sync_lines(report: BenchReport) -> list[str]:
    s = report.sync
    if s is None:
        return []
    mix = ", ".join(f"{kind} {count:,}" for kind, count in sorted(s.mix.items()))
    lines = [
        f"sync worker draining a backlog of {s.events:,} events (batches of {s.batch_size}; {mix}):"
    ]
    lines += [
        f"  {r.workers} worker(s) on {r.partitions} partition(s): {r.events_per_s:,.0f} events/s "
        f"({r.events:,} in {r.seconds:.2f} s, {r.ledger_rows:,} ledger rows, "
        f"worker CPU {r.worker_cpu_s:.1f} s, its Postgres backends {r.postgres_cpu_s:.1f} s)"
        for r in s.runs
    ]
    return lines


def sync_lag_lines(report: BenchReport) -> list[str]:
    g = report.sync_lag
    if g is None:
        return []
    return [
        f"engine-http with a sync worker beside the API: oldest unsynced event at most "
        f"{g.max_unsynced_age_ms / 1000:.3f} s old ({g.max_at_s:.1f} s into the phase; p99 "
        f"{g.p99_unsynced_age_ms / 1000:.3f} s over {g.samples} samples; {g.ledger_rows:,} "
        f"ledger rows; worker CPU {g.worker_cpu_s:.1f} s)"
    ]


def api_cpu_lines(report: BenchReport) -> list[str]:
    c = report.api_cpu
    if c is None:
        return []
    return [
        f"engine-http API CPU per request (workers' user+system time over requests served): "
        f"trivial /healthz {c.trivial_us:,.0f} µs ({c.trivial_requests:,} requests), "
        f"reserve while selling {c.reserve_us:,.0f} µs ({c.reserve_ratio:.2f}× trivial), "
        f"refusal after sell-out {c.refusal_us:,.0f} µs ({c.refusal_ratio:.2f}× trivial); "
        f"the HTTP driver's own CPU per request: trivial {c.driver_trivial_us:,.0f} µs, "
        f"reserve {c.driver_reserve_us:,.0f} µs, refusal {c.driver_refusal_us:,.0f} µs"
    ]


def script_cpu_lines(report: BenchReport) -> list[str]:
    c = report.script_cpu
    if c is None:
        return []
    return [
        f"Redis time in the scripts (INFO commandstats): {c.us_per_commit:.1f} µs per commit "
        f"({c.commits:,}), {c.us_per_release:.1f} µs per release ({c.releases:,}), "
        f"{c.calls_per_operation:.2f} EVALSHA per call; per reserve: the table's "
        "Redis µs/reserve (selling phase, per unit sold)"
    ]


def cluster_lines(report: BenchReport) -> list[str]:
    c = report.cluster
    if c is None:
        return []

    def ratio(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    lines = [
        f"Redis Cluster ({c.primaries} primaries + {c.replicas} replicas, {c.partitions} "
        f"partitions; many-SKU rows: {c.many_skus} SKUs on {c.partitions} partitions on both): "
        f"throughput × single node {ratio(c.hot_ratio)} on the hot SKU, "
        f"{ratio(c.many_ratio)} on many SKUs. CPU per unit sold in the selling phase:"
    ]
    sold = {r.design: r.sold for r in report.results}
    for row, cpu in c.cpu.items():
        n = sold.get(row, 0)
        primaries = [x for x in cpu.nodes if x.role == "primary"]
        busiest = max(primaries, key=lambda x: x.usec, default=None)
        total = sum(x.usec for x in primaries)
        share = f", busiest primary {busiest.usec / total:.0%} of it" if busiest and total else ""
        on_replicas = ""
        if any(x.role == "replica" for x in cpu.nodes):
            on_replicas = f", replicas {cpu.per_reserve_us(n, 'replica'):,.0f} µs"
        lines.append(
            f"  {row}: engine (this process) {cpu.client_cpu_s * 1e6 / n if n else 0:,.0f} µs, "
            f"primaries {cpu.per_reserve_us(n, 'primary'):,.0f} µs{on_replicas} (INFO cpu); "
            f"EVALSHA {cpu.per_reserve_us(n, 'primary', 'usec'):,.0f} µs (commandstats: time "
            f"inside the scripts, preemption included){share}"
        )
    lines += [
        f"  carts of 2 lines in {k.partitions} partition(s), reserve + commit, "
        f"{k.carts:,} carts: {k.carts_per_s:,.0f} carts/s, p50 {k.p50_ms:.2f} ms, "
        f"p99 {k.p99_ms:.2f} ms; per cart {k.evalsha_per_cart:.1f} EVALSHA, "
        f"{k.redis_us_per_cart:,.0f} µs in them, primaries {k.primary_cpu_us_per_cart:,.0f} µs, "
        f"engine {k.client_cpu_us_per_cart:,.0f} µs"
        for k in c.carts
    ]
    return lines


def notes(report: BenchReport) -> list[str]:
    return (
        api_cpu_lines(report)
        + latency_lines(report)
        + script_cpu_lines(report)
        + script_cost.lines(report.reserve_cost)
        + zero_loss_lines(report.zero_loss)
        + cluster_lines(report)
        + sync_lines(report)
        + sync_lag_lines(report)
        + [f"{r.design}: {r.notes}" for r in report.results if r.notes]
    )


def markdown(report: BenchReport) -> str:
    cfg = report.config
    lines = [
        f"{cfg['units']:,} units, {cfg['buyers']} buyers, sold-out phase "
        f"{cfg['soldout_seconds']} s; machine: {machine()}",
    ]
    if report.results:  # `--designs sync` alone sells nothing
        lines += [
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "|".join("---" if c == "design" else "---:" for c in COLUMNS) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    lines += ["", memory_line(report) + "."]
    lines += [f"- {n}" for n in notes(report)]
    return "\n".join(lines) + "\n"


def as_json(report: BenchReport) -> dict[str, Any]:
    memory = None if report.memory is None else dict(report.memory.__dict__)
    latency = None if report.latency is None else dict(report.latency.__dict__)
    return {
        "machine": machine(),
        "config": report.config,
        "results": [r.as_dict() for r in report.results],
        "memory": memory,
        "latency": latency,
        "sync": None if report.sync is None else report.sync.as_dict(),
        "sync_lag": None if report.sync_lag is None else report.sync_lag.as_dict(),
        "script_cpu": None if report.script_cpu is None else dict(report.script_cpu.__dict__),
        "reserve_cost": None if report.reserve_cost is None else report.reserve_cost.as_dict(),
        "bench_peak_rss_mib": report.bench_peak_rss_mib,
        "api_cpu": None if report.api_cpu is None else report.api_cpu.as_dict(),
        "cluster": None if report.cluster is None else report.cluster.as_dict(),
        "zero_loss": None if report.zero_loss is None else report.zero_loss.as_dict(),
    }


def write(report: BenchReport, directory: Path = REPORTS_DIR) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = directory / f"bench-{stamp}.json"
    md_path = directory / f"bench-{stamp}.md"
    json_path.write_bytes(orjson.dumps(as_json(report), option=orjson.OPT_INDENT_2))
    md_path.write_text(f"# flashsale bench {stamp}\n\n{markdown(report)}")
    return json_path, md_path
