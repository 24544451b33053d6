"""The sync worker's commands, registered by flashsale/cli.py:

    flashsale worker run [--consumer NAME] [--metrics-port N]    stream → Postgres, until SIGTERM
    flashsale worker status                                      lag per partition stream
    flashsale db upgrade | downgrade | current                   migrations

Heavy imports stay inside the commands: `flashsale --help` imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale.ui import EXIT_FAILURE, console, settings_or_exit

if TYPE_CHECKING:
    from flashsale.settings import Settings

worker_app = typer.Typer(
    help="The sync worker: every stream event into Postgres, exactly once.", no_args_is_help=True
)
db_app = typer.Typer(help="Postgres schema migrations (Alembic).", no_args_is_help=True)


def services() -> tuple[Settings, str, str]:
    """Settings and the Redis and Postgres URLs, the embedded servers started when unset."""
    from flashsale.embedded import ensure_services

    settings = settings_or_exit()
    redis_url, database_url = ensure_services(settings)
    return settings, redis_url, database_url


@worker_app.command("run")
def worker_run(
    consumer: Annotated[
        str | None, typer.Option(help="Consumer name, one per running worker (default: host-pid).")
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")
    ] = 0,
) -> None:
    """Sync the partition streams into Postgres until SIGTERM/Ctrl-C; the batch in hand finishes."""
    from engine.connection import connect_url
    from engine.runtime import tune_collector
    from sync_worker.metrics import WorkerMetrics
    from sync_worker.worker import SyncWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings, redis_url, database_url = services()
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    metrics = WorkerMetrics()
    if metrics_port:
        metrics.serve(metrics_port, settings.api_host)

    async def main() -> None:
        # No socket timeout on the blocking read would let a half-dead connection hang forever.
        timeout = settings.worker_block_ms / 1000 + 10
        redis = connect_url(
            redis_url,
            cluster=settings.redis_cluster,
            socket_timeout=timeout,
            socket_connect_timeout=5,
        )
        worker = SyncWorker(redis, database_url, settings, name, metrics)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run()
        finally:
            await redis.aclose()

    # A batch keeps thousands of parsed rows alive: at the default threshold the collector
    # walked them again and again, a fifth of the worker's CPU.
    tune_collector()
    asyncio.run(main())


@worker_app.command("status")
def worker_status() -> None:
    """Show each partition stream's length, pending entries and oldest unsynced event, and
    whether its Redis is verified against Postgres (exit 1 when a partition is fenced)."""
    from rich.table import Table

    from engine.connection import connect_url
    from engine.fencing import FenceStatus, statuses
    from engine.keys import KeySchema
    from engine.scripts import Scripts
    from engine.streams import PartitionLag, partition_lag

    settings, redis_url, _ = services()

    async def read() -> tuple[list[PartitionLag], Sequence[FenceStatus]]:
        async with connect_url(redis_url, cluster=settings.redis_cluster) as redis:
            schema = KeySchema(settings.partitions)
            lag = await partition_lag(redis, schema)
            return lag, await statuses(Scripts(redis)["fence"], schema)

    lags, fences = asyncio.run(read())
    fence_of = {st.partition: st for st in fences}
    table = Table("partition", "length", "pending", "oldest unsynced", "state", "redis")
    for row in lags:
        age = f"{row.oldest_unsynced_age_ms / 1000:.1f} s" if row.oldest_unsynced_age_ms else "-"
        state = "synced" if row.synced else "behind"
        if not row.group_exists:
            state = "no worker has run"
        fence = fence_of[row.partition]
        shown = {
            "verified": "verified",
            "new": "new (its first write claims it)",
            "recovering": "[yellow]recovering[/yellow] (waiting for the worker)",
            "fenced": "[red]FENCED[/red] (restore it)",
        }[fence.state]
        table.add_row(str(row.partition), str(row.length), str(row.pending), age, state, shown)
    console.print(table)
    fenced = [st for st in fences if st.state == "fenced"]
    for st in fenced:
        why = st.fenced or {}
        console.print(
            f"[red]partition {st.partition} is fenced[/red]: Postgres holds events up to "
            f"{why.get('postgres_newest', '?')}, its Redis only up to "
            f"{why.get('redis_last', '?')}; run `flashsale restore --partition {st.partition}`"
        )
    if fenced:
        raise typer.Exit(EXIT_FAILURE)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the database to the newest schema (or to --revision)."""
    from sync_worker import migrations

    _, _, database_url = services()
    migrations.upgrade(database_url, revision)
    console.print(f"database at revision {migrations.current(database_url)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="Target revision ('base': empty).")] = "base",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Migrate the database down: to 'base' DROPS every table, the ledger included."""
    from sync_worker import migrations

    _, _, database_url = services()
    if not yes and not typer.confirm(f"Downgrade to {revision}, dropping what it drops?"):
        raise typer.Exit(EXIT_FAILURE)
    migrations.downgrade(database_url, revision)
    console.print(f"database at revision {migrations.current(database_url) or 'base (empty)'}")


@db_app.command("current")
def db_current() -> None:
    """Print the revision the database is at."""
    from sync_worker import migrations

    _, _, database_url = services()
    console.print(migrations.current(database_url) or "base (empty)")
