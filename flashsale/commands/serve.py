"""`flashsale serve`: the API on uvicorn (uvloop + httptools), one or more worker processes.

Workers are separate processes that build their own app from the environment, so everything
decided here (servers started, generated keys and token secret) is handed over as FLASHSALE_*
variables. Cheap to import: `flashsale --help` imports this module.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from typing import Annotated

import typer

from flashsale.ui import console, settings_or_exit

GRACEFUL_SHUTDOWN_S = 15  # requests in flight get this long after SIGTERM; then lifespan closes
# Longer than a client's or load balancer's idle timeout (nginx: 75 s), so the server is never the
# side that closes a kept-alive connection just as a request is sent on it (the client sees a
# reset). uvicorn's 5 s default did exactly that to the bench's 500 buyers.
KEEP_ALIVE_S = 75


def serve(
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-w", min=1, max=64, help="Worker processes [FLASHSALE_API_WORKERS]."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address [FLASHSALE_API_HOST].")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Listen port [FLASHSALE_API_PORT].")
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="uvicorn's line per request (Prometheus metrics at /metrics count them anyway).",
        ),
    ] = True,
) -> None:
    """Serve the HTTP API (docs at /docs). Starts the embedded servers when no URLs are set."""
    import uvicorn

    settings = settings_or_exit()
    # The API's workers read ApiSettings, which knows no embedded servers: say "cluster" plainly.
    env: dict[str, str] = {"FLASHSALE_REDIS_CLUSTER": str(settings.redis_cluster).lower()}
    if settings.redis_url is None or settings.database_url is None:
        from flashsale.embedded import ensure_services

        with console.status("starting Redis and Postgres…") as status:
            redis_url, database_url = ensure_services(settings, status.update)
        env.update(FLASHSALE_REDIS_URL=redis_url, FLASHSALE_DATABASE_URL=database_url)
        console.print("[dim]embedded servers keep running: `flashsale services down`[/dim]")
    if not settings.token_secret:
        # One secret for all workers, or a token issued by one would fail on another.
        env["FLASHSALE_TOKEN_SECRET"] = secrets.token_urlsafe(32)
        console.print("[dim]FLASHSALE_TOKEN_SECRET unset: reservation tokens last this run[/dim]")
    if not settings.admin_key_list and not settings.storefront_key_list:
        env["FLASHSALE_ADMIN_KEYS"] = admin = f"adm_{secrets.token_urlsafe(24)}"
        env["FLASHSALE_STOREFRONT_KEYS"] = storefront = f"sf_{secrets.token_urlsafe(24)}"
        console.print(f"no API keys set; generated for this run:\n  admin       {admin}")
        console.print(f"  storefront  {storefront}")
    count = workers or settings.api_workers
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="flashsale-metrics-") as metrics_dir:
        if count > 1:
            # Must be set before prometheus_client is imported in a worker: it sums the workers.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(
            "api.app:create_app_from_env",
            factory=True,
            host=host or settings.api_host,
            port=settings.api_port if port is None else port,
            workers=count,
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            timeout_keep_alive=KEEP_ALIVE_S,
            access_log=access_log,
            server_header=False,
        )
