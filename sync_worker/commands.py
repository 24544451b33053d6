"""What `flashsale reconcile` and `flashsale restore` do once the servers are known: connect,
run, print. Separate from cli.py so tests and other programs can call them with URLs."""

from __future__ import annotations

from redis.asyncio import Redis
from rich.table import Table

from engine.config import Settings
from engine.keys import KeySchema
from flashsale.ui import console
from sync_worker.db import connect
from sync_worker.reconcile import ReconcileResult, reconcile
from sync_worker.restore import run_restore

MAX_ROWS = 200  # a drift table longer than this is cut: the count says how bad it is


async def run_reconcile(
    settings: Settings, redis_url: str, database_url: str, *, deep: bool = False
) -> bool:
    """Prints the differences; True when there are none."""
    async with Redis.from_url(redis_url) as redis, await connect(database_url) as conn:
        result = await reconcile(redis, conn, KeySchema(settings.partitions), deep=deep)
    print_reconcile(result)
    return not result.drifts


def print_reconcile(result: ReconcileResult) -> None:
    if result.unsynced_applied:
        console.print(f"{result.unsynced_applied} events not yet in Postgres were accounted for")
    if result.ahead:
        console.print(
            f"[yellow]Postgres has events newer than Redis in partition(s) {result.ahead}: Redis "
            "lost writes, or the sale kept changing; reconcile again once it is quiet[/yellow]"
        )
    if not result.drifts:
        console.print(f"no drift: {result.skus} SKUs, {result.levels} locations agree")
        return
    table = Table("sku", "location", "field", "redis", "postgres", title="drift")
    for d in result.drifts[:MAX_ROWS]:
        table.add_row(d.sku, d.location, d.field, _show(d.redis), _show(d.postgres))
    console.print(table)
    console.print(f"[red]{len(result.drifts)} difference(s)[/red] over {result.skus} SKUs")


async def run_restore_command(
    settings: Settings, redis_url: str, database_url: str, *, force: bool = False
) -> bool:
    """Restores and prints what was written; False when there were warnings."""
    async with Redis.from_url(redis_url) as redis, await connect(database_url) as conn:
        report, image = await run_restore(redis, conn, settings, force=force)
    console.print(
        f"restored {report.skus} SKUs, {report.holds} holds, {report.reservations} reservations"
    )
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print("next: `flashsale reconcile` before reopening the sale")
    return not report.warnings


def _show(value: object) -> str:
    return "-" if value is None else str(value)
