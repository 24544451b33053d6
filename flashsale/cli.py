"""The `flashsale` console command: the composition root that turns settings into running parts.

Each subcommand lives in flashsale/commands/; this module only assembles them. Those modules stay
cheap to import (heavy imports inside the commands): `flashsale --help` imports every one of them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from engine.errors import ConfigurationError, FlashsaleError
from flashsale.commands import (
    bench,
    dev,
    loadtest,
    reconcile,
    serve,
    services,
    sku,
    stock,
    sweeper,
    webhooks,
    worker,
)
from flashsale.ui import EXIT_CONFIG, EXIT_FAILURE, unreachable_message

app = typer.Typer(
    name="flashsale",
    help="Flash-sale reservation engine: dev stack, API, worker, sweeper, stock admin, load tests.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold URLs with passwords and API keys
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"flashsale {version('flashsale')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Flash-sale reservation engine: dev stack, API, worker, sweeper, stock admin, load tests."""


app.add_typer(services.app, name="services")
app.command("dev")(dev.dev)
app.command("serve")(serve.serve)
app.add_typer(worker.worker_app, name="worker")
app.command("sweeper")(sweeper.sweeper)
app.add_typer(stock.stock_app, name="stock")
app.command("reconcile")(reconcile.reconcile)
app.command("restore")(reconcile.restore)
app.add_typer(worker.db_app, name="db")
app.command("loadtest")(loadtest.loadtest)
app.command("bench")(bench.bench)
app.add_typer(sku.app, name="sku")
app.add_typer(webhooks.app, name="webhooks")


def main() -> None:
    try:
        app()
    except FlashsaleError as exc:
        # Raised outside settings_or_exit (e.g. a server that will not start): still one line.
        typer.echo(f"error: {exc}", err=True)
        code = EXIT_CONFIG if isinstance(exc, ConfigurationError) else EXIT_FAILURE
        raise SystemExit(code) from None
    except Exception as exc:
        # A server that does not answer is the operator's to fix, not a bug: one line naming it.
        message = unreachable_message(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
