"""The `flashsale` console command: the composition root that turns settings into running parts.

Subcommands of later issues start as stubs at the bottom of this file, one line each. To fill
one, replace its line with the registration of your own Typer app or function, e.g.

    from sync_worker.cli import app as worker_app
    app.add_typer(worker_app, name="worker")

    from api.cli import serve
    app.command("serve")(serve)

Keep such modules cheap to import (heavy imports inside the commands): `flashsale --help`
imports every one of them.
"""

from __future__ import annotations

import typer

from engine.errors import ConfigurationError, FlashsaleError
from flashsale import dev as dev_stack
from flashsale.embedded import embedded_servers, start_services, stop_services
from flashsale.ui import EXIT_CONFIG, EXIT_FAILURE, console, settings_or_exit

app = typer.Typer(
    name="flashsale",
    help="Flash-sale reservation engine: dev stack, API, worker, sweeper, stock admin, load tests.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold URLs with passwords and API keys
)
services_app = typer.Typer(
    help="The Redis and Postgres this project uses: embedded in the data folder unless "
    "FLASHSALE_REDIS_URL / FLASHSALE_DATABASE_URL name others.",
    no_args_is_help=True,
)
app.add_typer(services_app, name="services")

STUBS: dict[str, int] = {}  # subcommand → the issue that fills it; `dev` skips these


@services_app.command("up")
def services_up() -> None:
    """Start the embedded servers (they keep running until `flashsale services down`)."""
    settings = settings_or_exit()
    with console.status("starting services…") as status:
        services = start_services(settings, status.update)
    console.print(f"redis     {services.redis_url}")
    console.print(f"postgres  {services.database_url}")


@services_app.command("down")
def services_down() -> None:
    """Stop the embedded servers of the data folder; external servers are left alone."""
    settings = settings_or_exit()
    with console.status("stopping services…") as status:
        stopped = stop_services(settings, status.update)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@services_app.command("status")
def services_status() -> None:
    """Show each server's state and URL; exit 1 when one is not running or not reachable."""
    settings = settings_or_exit()
    redis, postgres = embedded_servers(settings)
    healthy = True
    for name, external, server in (
        ("redis", settings.redis_url, redis),
        ("postgres", settings.database_url, postgres),
    ):
        if external:
            up = _reachable(name, external)
            console.print(f"{name:9} external  {'reachable' if up else 'UNREACHABLE'}  {external}")
        else:
            up = server.is_running()
            where = server.url if up else f"(data in {server.data_dir})"
            console.print(f"{name:9} embedded  {'running' if up else 'stopped'}  {where}")
        healthy = healthy and up
    if not healthy:
        raise typer.Exit(EXIT_FAILURE)


def _reachable(name: str, url: str) -> bool:
    try:
        if name == "redis":
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            no_retry = Retry(NoBackoff(), 0)  # a status probe answers now, not after backoff
            with redis.Redis.from_url(
                url, socket_connect_timeout=3, socket_timeout=3, retry=no_retry
            ) as client:
                return bool(client.ping())
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # any failure to talk to it is the answer, not an error
        return False


@app.command("dev")
def dev() -> None:
    """Run the whole stack locally: services, migrations, demo sale, API, worker, sweeper."""
    settings = settings_or_exit()
    raise typer.Exit(dev_stack.run_dev(settings, STUBS))


def stub(name: str, issue: int, summary: str) -> None:
    """Register a placeholder that says which issue fills it and fails."""

    def placeholder() -> None:
        typer.echo(f"not implemented yet: filled by issue {issue}", err=True)
        raise typer.Exit(EXIT_FAILURE)

    placeholder.__doc__ = f"{summary} (not implemented yet: issue {issue})"
    # Extra arguments accepted so `flashsale worker run` reaches the message, not a usage error.
    settings = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command(name, context_settings=settings)(placeholder)
    STUBS[name] = issue


# ── Subcommands filled by later issues: replace a line with your registration ──────────────────
from api.cli import serve  # noqa: E402 - registered where its stub stood

app.command("serve")(serve)
from sync_worker.cli import db_app, reconcile, restore, worker_app  # noqa: E402 - as above

app.add_typer(worker_app, name="worker")
from flashsale.engine_cli import stock_app, sweeper  # noqa: E402 - as above

app.command("sweeper")(sweeper)
app.add_typer(stock_app, name="stock")
app.command("reconcile")(reconcile)
app.command("restore")(restore)
app.add_typer(db_app, name="db")
from loadtests.cli import loadtest  # noqa: E402 - as above

app.command("loadtest")(loadtest)
from loadtests.bench.cli import bench  # noqa: E402 - as above

app.command("bench")(bench)
from flashsale.commands.webhooks import app as webhooks_app  # noqa: E402 - as above

app.add_typer(webhooks_app, name="webhooks")
# ── end of later-issue subcommands ─────────────────────────────────────────────────────────────


def main() -> None:
    try:
        app()
    except FlashsaleError as exc:
        # Raised outside settings_or_exit (e.g. a server that will not start): still one line.
        typer.echo(f"error: {exc}", err=True)
        code = EXIT_CONFIG if isinstance(exc, ConfigurationError) else EXIT_FAILURE
        raise SystemExit(code) from None
