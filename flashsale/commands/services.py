"""`flashsale services up|down|status`: the embedded Redis and Postgres of the data folder."""

from __future__ import annotations

import typer

from flashsale.embedded import embedded_servers, start_services, stop_services
from flashsale.ui import EXIT_FAILURE, console, settings_or_exit

app = typer.Typer(
    help="The Redis and Postgres this project uses: embedded in the data folder unless "
    "FLASHSALE_REDIS_URL / FLASHSALE_DATABASE_URL name others. FLASHSALE_EMBEDDED_CLUSTER=true "
    "makes the embedded Redis a local Redis Cluster (3 primaries, 3 replicas).",
    no_args_is_help=True,
)


@app.command("up")
def services_up() -> None:
    """Start the embedded servers (they keep running until `flashsale services down`)."""
    settings = settings_or_exit()
    with console.status("starting services…") as status:
        services = start_services(settings, status.update)
    kind = " (Redis Cluster: set FLASHSALE_REDIS_CLUSTER=true)" if settings.redis_cluster else ""
    console.print(f"redis     {services.redis_url}{kind}")
    console.print(f"postgres  {services.database_url}")


@app.command("down")
def services_down() -> None:
    """Stop the embedded servers of the data folder; external servers are left alone."""
    settings = settings_or_exit()
    with console.status("stopping services…") as status:
        stopped = stop_services(settings, status.update)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("status")
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
