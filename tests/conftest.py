"""Real servers for the whole suite, isolated per test.

    redis_url        session   FLASHSALE_TEST_REDIS_URL, else an embedded Redis for the session
    database_url     session   FLASHSALE_TEST_DATABASE_URL, else an embedded Postgres
    redis_client     function  async client (decode_responses) on a flushed Redis
    pg_database_url  function  a fresh, empty Postgres database, dropped after the test
    settings         function  Settings on those two, data_dir in tmp_path, Redis flushed
    redis_cluster_url  session   FLASHSALE_TEST_REDIS_CLUSTER_URL, else an embedded Redis Cluster
    redis_target     function  a flushed single node, then (a second run) the flushed cluster

With the override variables set the suite FLUSHES that Redis: point it at a test server only.

Property tests (hypothesis, schemathesis) draw the same examples on every run (`derandomize`), so
`make test` fails for a change, never for a lucky draw. `HYPOTHESIS_PROFILE=explore` draws new ones
each run: how to hunt for bugs nobody has written a test for yet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
import redis.asyncio
import redis.cluster
from hypothesis import settings as hypothesis_settings

from flashsale.embedded import EmbeddedPostgres, EmbeddedRedis
from flashsale.settings import Settings
from sync_worker import migrations
from tests.engine_support import redis_of_its_own
from tests.worker_support import fast

hypothesis_settings.register_profile("repeatable", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def embedded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="session")
def redis_url(embedded_root: Path) -> Iterator[str]:
    given = os.environ.get("FLASHSALE_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedRedis(embedded_root)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_url(embedded_root: Path) -> Iterator[str]:
    given = os.environ.get("FLASHSALE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    server = EmbeddedPostgres(embedded_root)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@contextmanager
def fresh_database(database_url: str, prefix: str = "test") -> Iterator[str]:
    """A new, empty database on the session's Postgres (its URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(database_url, name)
    finally:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
            # FORCE: a test that leaked a connection must not fail the next one's teardown.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database_url(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as url:
        yield url


@pytest.fixture
def settings(redis_url: str, pg_database_url: str, tmp_path: Path) -> Settings:
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    return Settings(redis_url=redis_url, database_url=pg_database_url, data_dir=tmp_path / "data")


@pytest.fixture
def cfg(settings: Settings) -> Settings:
    """The worker, reconcile and restore tests' settings: `fast`, on a migrated database."""
    assert settings.database_url
    migrations.upgrade(settings.database_url)
    return fast(settings)


def libpq_url(url: str) -> str:
    """The URL psycopg accepts: SQLAlchemy's `postgresql+psycopg://` without the driver."""
    return url.replace("+psycopg", "", 1)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


# ---- Redis Cluster --------------------------------------------------------------------------
# The engine's operation, race and stateful tests run on a single node and on a real cluster
# (3 primaries, 3 replicas, started once per session; FLASHSALE_TEST_REDIS_CLUSTER_URL names
# another). On the cluster the engine spreads SKUs over CLUSTER_PARTITIONS partitions.

CLUSTER_PARTITIONS = 16


@dataclass(frozen=True)
class RedisTarget:
    """Where an engine test runs: a single node, or a cluster named by any node."""

    url: str
    cluster: bool = False

    @property
    def partitions(self) -> int:
        return CLUSTER_PARTITIONS if self.cluster else 1


@pytest.fixture(scope="session")
def redis_cluster_url(embedded_root: Path) -> Iterator[str]:
    given = os.environ.get("FLASHSALE_TEST_REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    from flashsale.redis_cluster import EmbeddedRedisCluster

    server = EmbeddedRedisCluster(embedded_root)
    try:
        yield server.start()
    finally:
        server.stop()


def flush_cluster(url: str) -> None:
    with redis.cluster.RedisCluster.from_url(url) as client:
        client.flushall()  # every primary


@pytest.fixture(params=["single", pytest.param("cluster", marks=pytest.mark.slow)])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """A flushed Redis: the session's single node, then the session's cluster."""
    if request.param == "single":
        url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as client:
            client.flushall()
        return RedisTarget(url)
    url = request.getfixturevalue("redis_cluster_url")
    flush_cluster(url)
    return RedisTarget(url, cluster=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test only (the test kills it), fsyncing every write so a kill loses none."""
    with redis_of_its_own(tmp_path / "redis-data") as server:
        yield server
