"""`flashsale webhooks …`: the dispatcher that sends signed events to registered endpoints.

    flashsale webhooks run [--metrics-port N]    ledger → deliveries → POSTs, until SIGTERM
    flashsale webhooks status                    lag, and deliveries per endpoint and status

Heavy imports stay inside the commands: `flashsale --help` imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated, Any

import typer

from flashsale.ui import EXIT_CONFIG, console, fail, settings_or_exit

app = typer.Typer(
    help="Webhooks: stock and reservation events, signed (Standard Webhooks), to endpoints "
    "registered with POST /v1/webhooks.",
    no_args_is_help=True,
)


def _database_url() -> str:
    from flashsale.embedded import ensure_services

    settings = settings_or_exit()
    if settings.database_url:
        return settings.database_url
    _, database_url = ensure_services(settings)
    return database_url


def _webhook_settings() -> Any:
    from engine.errors import ConfigurationError
    from webhooks.settings import load_webhook_settings

    try:
        return load_webhook_settings()
    except ConfigurationError as exc:
        fail(str(exc), EXIT_CONFIG)


@app.command("run")
def run(
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")
    ] = 0,
) -> None:
    """Send ledger events to the endpoints until SIGTERM/Ctrl-C; requests in flight finish.

    Reads the ledger after its persisted cursor, so a restart resumes where it stopped and
    sends again only what it had not confirmed (receivers drop repeats by webhook-id).
    Tuned with FLASHSALE_WEBHOOK_* (timeout, backoff, retry horizon, disable window).
    """
    from webhooks.dispatcher import Dispatcher
    from webhooks.metrics import WebhookMetrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    webhook_settings = _webhook_settings()
    database_url = _database_url()
    metrics = WebhookMetrics()
    if metrics_port:
        metrics.serve(metrics_port, settings_or_exit().api_host)

    async def main() -> None:
        dispatcher = Dispatcher(database_url, webhook_settings, metrics)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, dispatcher.stop)
        await dispatcher.run()

    asyncio.run(main())


@app.command("status")
def status() -> None:
    """Show the dispatcher's lag and each endpoint's deliveries by status."""
    import psycopg

    from webhooks.store import lag_seconds

    database_url = _database_url().replace("+psycopg", "", 1)

    async def read() -> tuple[float, list[Any]]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            lag = await lag_seconds(conn)
            cur = await conn.execute(
                """SELECT e.id, e.url, e.enabled, coalesce(e.disabled_reason, ''),
                    count(*) FILTER (WHERE d.status = 'pending'),
                    count(*) FILTER (WHERE d.status = 'delivered'),
                    count(*) FILTER (WHERE d.status = 'failed')
                FROM webhook_endpoints e LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.id
                GROUP BY e.id ORDER BY e.created_at"""
            )
            return lag, await cur.fetchall()

    try:
        lag, rows = asyncio.run(read())
    except psycopg.Error as exc:
        fail(f"cannot read the webhook tables: {exc}".splitlines()[0])
    console.print(f"dispatcher lag: {lag:.1f} s" if lag else "dispatcher lag: caught up")
    # One line per endpoint, never wrapped: ids and URLs stay whole for copy and grep.
    for endpoint_id, url, enabled, reason, pending, delivered, failed in rows:
        state = "enabled" if enabled else f"disabled ({reason})"
        typer.echo(
            f"{endpoint_id}  {url}  pending {pending}  delivered {delivered}  failed {failed}"
            f"  {state}"
        )
