"""`flashsale reconcile` and `flashsale restore`: Redis checked against, or rebuilt from, Postgres.

sync_worker does the work and returns what it found; this module prints it and picks the exit code.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale.commands.worker import services
from flashsale.ui import EXIT_FAILURE, console, fail

if TYPE_CHECKING:
    from engine.restore import RestoreReport
    from sync_worker.reconcile import ReconcileResult

MAX_ROWS = 200  # a drift table longer than this is cut: the count says how bad it is


def reconcile(
    deep: Annotated[
        bool, typer.Option("--deep", help="Also check the ledger's deltas sum to the levels.")
    ] = False,
) -> None:
    """Compare every SKU and location in Redis with Postgres, and each partition's stream with the
    newest event Postgres synced; exit 1 on any difference, or a partition behind or fenced."""
    from sync_worker.reconcile import reconcile_urls

    settings, redis_url, database_url = services()
    result = asyncio.run(
        reconcile_urls(
            settings.partitions, redis_url, database_url, deep=deep, cluster=settings.redis_cluster
        )
    )
    print_reconcile(result)
    if result.failed:
        raise typer.Exit(EXIT_FAILURE)


def restore(
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a Redis that still holds flashsale data.")
    ] = False,
    partition: Annotated[
        int | None,
        typer.Option(
            "--partition",
            min=0,
            help="Rebuild this partition alone (one found behind Postgres and fenced); the "
            "others keep selling. Its data in Redis is replaced.",
        ),
    ] = None,
) -> None:
    """Rebuild Redis (SKUs, levels, holds, orders) from Postgres after Redis lost its data, or
    one fenced partition; what is restored sells again at once."""
    from engine.restore import RedisNotEmpty, RestoreError
    from sync_worker.restore import restore_urls

    settings, redis_url, database_url = services()
    try:
        report = asyncio.run(
            restore_urls(settings, redis_url, database_url, force=force, partition=partition)
        )
    except RedisNotEmpty as exc:
        fail(f"{exc} (--force overwrites it)")
    except RestoreError as exc:
        fail(str(exc))
    print_restore(report)
    if report.warnings:
        raise typer.Exit(EXIT_FAILURE)


def print_reconcile(result: ReconcileResult) -> None:
    from rich.table import Table

    for seq in result.sequences:
        colour = "red" if seq.failed else "yellow"
        console.print(f"[{colour}]{seq.describe()}[/{colour}]")
    if result.unsynced_applied:
        console.print(f"{result.unsynced_applied} events not yet in Postgres were accounted for")
    if result.ahead:
        console.print(
            f"[yellow]Postgres has events newer than Redis in partition(s) {result.ahead}: Redis "
            "lost writes, or the sale kept changing; reconcile again once it is quiet[/yellow]"
        )
    if not result.drifts:
        agree = f"{result.skus} SKUs, {result.levels} locations agree"
        if any(seq.failed for seq in result.sequences):  # levels can agree on a Redis gone back
            console.print(f"[red]levels agree ({agree}), but Redis is not as new as Postgres[/red]")
        else:
            console.print(f"no drift: {agree}")
        return
    table = Table("sku", "location", "field", "redis", "postgres", title="drift")
    for d in result.drifts[:MAX_ROWS]:
        table.add_row(d.sku, d.location, d.field, _show(d.redis), _show(d.postgres))
    console.print(table)
    console.print(f"[red]{len(result.drifts)} difference(s)[/red] over {result.skus} SKUs")


def print_restore(report: RestoreReport) -> None:
    console.print(
        f"restored {report.skus} SKUs, {report.holds} holds, {report.reservations} reservations"
    )
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print("next: `flashsale reconcile` before reopening the sale")


def _show(value: object) -> str:
    return "-" if value is None else str(value)
