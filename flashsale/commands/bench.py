"""`flashsale bench`: every design on one hot SKU, printed as a table and written as reports.

Cheap to import (`flashsale --help` imports it); the work is imported late.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale.ui import console, fail, settings_or_exit

if TYPE_CHECKING:
    from rich.table import Table

    from flashsale.settings import Settings
    from loadtests.bench.runner import BenchReport

QUICK = {
    "units": 200,
    "buyers": 20,
    "soldout_seconds": 1.0,
    "memory_holds": 1_000,
    "latency_calls": 500,
}
FULL = {
    "units": 20_000,
    "buyers": 500,
    "soldout_seconds": 5.0,
    "memory_holds": 100_000,  # loadtests.bench.memory.COMPARABLE_HOLDS
    "latency_calls": 10_000,
}


def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Seconds, not minutes: 200 units, 20 buyers, 1 s.")
    ] = False,
    units: Annotated[
        int | None, typer.Option("--units", "-s", min=1, help="Units of the SKU.")
    ] = None,
    buyers: Annotated[
        int | None, typer.Option("--buyers", "-b", min=1, help="Concurrent buyers.")
    ] = None,
    designs: Annotated[
        list[str] | None,
        typer.Option("--designs", "-d", help="Designs to run (repeat or comma-separate)."),
    ] = None,
    soldout_seconds: Annotated[
        float | None, typer.Option("--soldout-seconds", min=0, help="Length of the sold-out phase.")
    ] = None,
    memory_holds: Annotated[
        int | None,
        typer.Option("--memory-holds", min=0, help="Holds for the memory probe; 0 skips."),
    ] = None,
    latency_calls: Annotated[
        int | None,
        typer.Option(
            "--latency-calls",
            min=0,
            help="Sequential reserve calls for the light-load latency probe; 0 skips.",
        ),
    ] = None,
    sync_events: Annotated[
        int | None,
        typer.Option(
            "--sync-events",
            min=1,
            help="Backlog the `sync` design drains (default: 10 per unit).",
        ),
    ] = None,
    api_workers: Annotated[
        int, typer.Option("--api-workers", min=1, max=64, help="engine-http's API workers.")
    ] = 2,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Also run the engine on a Redis Cluster (the bench's own embedded one: 3 "
            "primaries, --cluster-replicas each), next to `engine`: the hot SKU, then many SKUs "
            "on both, and carts within one partition vs across two.",
        ),
    ] = False,
    cluster_url: Annotated[
        str | None,
        typer.Option(
            "--cluster-url",
            help="Bench this Redis Cluster (any node) instead of starting one (implies "
            "--cluster; it gets bench SKUs and holds).",
        ),
    ] = None,
    cluster_replicas: Annotated[
        int,
        typer.Option(
            "--cluster-replicas",
            min=0,
            max=2,
            help="Replicas per primary of the bench's own cluster (0: the primaries alone, as "
            "when the replicas run on other machines).",
        ),
    ] = 1,
    reports_dir: Annotated[
        Path, typer.Option("--reports-dir", help="Where the JSON and Markdown reports go.")
    ] = Path("loadtests/reports"),
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Bench this Redis (it gets bench SKUs and holds); default: the bench's own "
            "embedded one in <data dir>/bench. FLASHSALE_REDIS_URL is not used.",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Bench this Postgres (schema flashsale_bench); default: the bench's own "
            "embedded one in <data dir>/bench. FLASHSALE_DATABASE_URL is not used.",
        ),
    ] = None,
) -> None:
    """Benchmark every design on one hot SKU: sell-out, then a sold-out phase.

    The bench never touches the dev stack's data: unless --redis-url/--database-url name
    servers, it runs its own embedded Redis and Postgres in <data dir>/bench.
    """
    import asyncio

    from rich.console import Console

    from flashsale.embedded import EmbeddedRedisCluster, start_services
    from flashsale.local_stack import served_api
    from flashsale.redis_replica import ChildRedis
    from loadtests.bench import report as out
    from loadtests.bench import zero_loss
    from loadtests.bench.runner import DESIGNS, BenchConfig, run_bench

    base = QUICK if quick else FULL
    chosen = tuple(d.strip() for arg in designs or [] for d in arg.split(",") if d.strip())
    # --quick leaves engine-http out unless asked: starting two API workers costs seconds.
    chosen = chosen or tuple(d for d in DESIGNS if not (quick and d == "engine-http"))
    unknown = [d for d in chosen if d not in DESIGNS]
    if unknown:
        fail(f"unknown design(s) {', '.join(unknown)}; choose from {', '.join(DESIGNS)}")
    cluster = cluster or cluster_url is not None
    if cluster and "engine" not in chosen:
        fail("--cluster compares the cluster with the `engine` design: include it in --designs")
    settings = bench_settings(settings_or_exit(), redis_url, database_url)
    with console.status("starting services…") as status:
        services = start_services(settings, status.update)
        own_cluster = None
        # engine-ack waits for a replica: the bench's own Redis gets one for the whole run, so
        # `engine` and `engine-ack` are measured on the same primary with the same replica.
        own_replica = None
        if zero_loss.DESIGN in chosen and redis_url is None:
            status.update("starting a replica of the bench's Redis…")
            own_replica = ChildRedis(settings.data_dir / "replica", replica_of=services.redis_url)
            try:
                own_replica.start()
            except BaseException:
                services.stop(status.update)
                raise
        if cluster and cluster_url is None:
            own_cluster = EmbeddedRedisCluster(
                settings.data_dir, settings.redis_appendfsync, cluster_replicas
            )
            try:
                cluster_url = own_cluster.start(status.update)
            except BaseException:
                if own_replica is not None:
                    own_replica.stop()
                services.stop(status.update)
                raise
        cfg = BenchConfig(
            units=units or int(base["units"]),
            buyers=buyers or int(base["buyers"]),
            soldout_seconds=float(
                base["soldout_seconds"] if soldout_seconds is None else soldout_seconds
            ),
            designs=chosen,
            memory_holds=int(base["memory_holds"] if memory_holds is None else memory_holds),
            latency_calls=int(base["latency_calls"] if latency_calls is None else latency_calls),
            redis_url=services.redis_url,
            database_url=services.database_url,
            settings=settings,
            api_workers=api_workers,
            start_api=served_api,
            sync_events=sync_events,
            cluster_url=cluster_url,
        )
        try:
            result = asyncio.run(run_bench(cfg, status.update))
        except zero_loss.NoReplica as exc:
            fail(str(exc))
        finally:
            # The bench's own servers: nobody else uses them, so none is left running.
            if own_replica is not None:
                own_replica.stop()
            services.stop(status.update)
            if own_cluster is not None:
                own_cluster.stop(status.update)
    # Piped output has no terminal width: give the thirteen columns room instead of truncating.
    wide = console if console.is_terminal else Console(width=190, highlight=False)
    if result.results:  # `sync` alone sells nothing: its figures are the notes below
        wide.print(table(result))
    for note in out.notes(result):
        console.print(f"[dim]{note}[/dim]")
    json_path, md_path = out.write(result, reports_dir)
    console.print(f"reports: {json_path}  {md_path}")


def bench_settings(settings: Settings, redis_url: str | None, database_url: str | None) -> Settings:
    """The servers the bench writes to: the ones named on the command line, else its own.

    Never FLASHSALE_REDIS_URL/DATABASE_URL: those name the sale's servers, and the bench leaves
    SKUs, holds and ledger rows (which can never be deleted) wherever it runs.
    """
    ignored = [
        name
        for name, env, given in (
            ("FLASHSALE_REDIS_URL", settings.redis_url, redis_url),
            ("FLASHSALE_DATABASE_URL", settings.database_url, database_url),
        )
        if env and not given
    ]
    if ignored:
        console.print(
            f"[yellow]{' and '.join(ignored)} ignored: the bench uses its own embedded servers "
            "(--redis-url/--database-url to bench a server of yours)[/yellow]"
        )
    update: dict[str, object] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "data_dir": settings.data_dir / "bench",
    }
    if redis_url is None:
        # The bench's own Redis is one server: the cluster, when asked for, is --cluster's.
        # Restarted from its AOF by a later run, it is a new server no worker has compared with
        # Postgres yet; its bench data needs no such check, so it is taken as it is.
        update.update(embedded_cluster=False, redis_cluster=False, fencing=False)
    return settings.model_copy(update=update)


def table(report: BenchReport) -> Table:
    from rich.table import Table

    from loadtests.bench.report import COLUMNS, machine, memory_line, rows

    cfg = report.config
    title = f"flashsale bench: {cfg['units']:,} units, {cfg['buyers']} buyers, {machine()}"
    out = Table(title=title, caption=memory_line(report))
    for column in COLUMNS:
        out.add_column(column, justify="left" if column == "design" else "right")
    for row in rows(report):
        out.add_row(*row)
    return out
