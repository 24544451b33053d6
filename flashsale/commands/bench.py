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
    "memory_holds": 100_000,
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
    reports_dir: Annotated[
        Path, typer.Option("--reports-dir", help="Where the JSON and Markdown reports go.")
    ] = Path("loadtests/reports"),
) -> None:
    """Benchmark every design on one hot SKU: sell-out, then a sold-out phase."""
    import asyncio

    from rich.console import Console

    from flashsale.embedded import start_services
    from flashsale.local_stack import served_api
    from loadtests.bench import report as out
    from loadtests.bench.runner import DESIGNS, BenchConfig, run_bench

    base = QUICK if quick else FULL
    chosen = tuple(d.strip() for arg in designs or [] for d in arg.split(",") if d.strip())
    # --quick leaves engine-http out unless asked: starting two API workers costs seconds.
    chosen = chosen or tuple(d for d in DESIGNS if not (quick and d == "engine-http"))
    unknown = [d for d in chosen if d not in DESIGNS]
    if unknown:
        fail(f"unknown design(s) {', '.join(unknown)}; choose from {', '.join(DESIGNS)}")
    settings = settings_or_exit()
    with console.status("starting services…") as status:
        services = start_services(settings, status.update)
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
        )
        result = asyncio.run(run_bench(cfg, status.update))
    # Piped output has no terminal width: give the eleven columns room instead of truncating.
    wide = console if console.is_terminal else Console(width=160, highlight=False)
    if result.results:  # `sync` alone sells nothing: its figures are the notes below
        wide.print(table(result))
    for note in out.notes(result):
        console.print(f"[dim]{note}[/dim]")
    if services.started:
        # As `flashsale serve`: a second run reuses them instead of paying their start-up again.
        console.print("[dim]embedded servers keep running: `flashsale services down`[/dim]")
    json_path, md_path = out.write(result, reports_dir)
    console.print(f"reports: {json_path}  {md_path}")


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
