"""The embedded servers are real: they start, keep their data across restarts, and stop."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psycopg
import pytest
import redis
import redis.asyncio

from flashsale.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    ensure_services,
    start_services,
    stop_services,
)
from flashsale.procs import pid_alive, wait_until
from flashsale.settings import Settings


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().splitlines()[0])


def test_redis_keeps_data_across_restart_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        with redis.Redis.from_url(url) as client:
            client.set("survivor", "yes")
        pid = json.loads(server.state_path.read_text())["pid"]
        assert server.stop() is True
        assert not pid_exists(pid)
        assert not server.is_running() and server.url is None

        again = server.start()
        assert again == url  # same port: clients and printed URLs stay valid across a restart
        with redis.Redis.from_url(again) as client:
            assert client.get("survivor") == b"yes"
    finally:
        server.stop()


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_redis_runs_with_aof_and_the_configured_fsync(tmp_path: Path, appendfsync: str) -> None:
    server = EmbeddedRedis(tmp_path, appendfsync=appendfsync)
    try:
        with redis.Redis.from_url(server.start(), decode_responses=True) as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": appendfsync}
            assert client.config_get("dir")["dir"] == str(tmp_path.resolve() / "redis")
    finally:
        server.stop()


def test_redis_start_is_idempotent_and_seen_by_another_handle(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    try:
        url = first.start()
        # A second handle stands for another process: it reads the state file.
        other = EmbeddedRedis(tmp_path)
        assert other.is_running() and other.url == url
        assert other.start() == url
    finally:
        first.stop()
    assert not EmbeddedRedis(tmp_path).is_running()


def test_stopping_servers_that_never_ran_is_a_no_op(tmp_path: Path) -> None:
    assert EmbeddedRedis(tmp_path).stop() is False
    assert EmbeddedPostgres(tmp_path).stop() is False


@pytest.mark.slow
def test_postgres_keeps_rows_across_restart_and_stops(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path)
    url = server.start()
    try:
        assert url.endswith("/flashsale")
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE survivors (name text)")
            conn.execute("INSERT INTO survivors VALUES ('row')")
        pid = postmaster_pid(server)
        assert server.stop() is True
        assert not pid_exists(pid)
        assert not server.is_running() and server.url is None

        url = server.start()
        assert server.is_running() and server.url == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT name FROM survivors").fetchall() == [("row",)]
    finally:
        server.stop()


def test_given_urls_are_used_and_nothing_is_started(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    settings = Settings(redis_url=redis_url, database_url=database_url, data_dir=tmp_path)
    assert ensure_services(settings) == (redis_url, database_url)
    assert not (tmp_path / "redis").exists()
    assert not (tmp_path / "postgres").exists()


@pytest.mark.slow
def test_without_urls_both_servers_start_and_stop_together(tmp_path: Path) -> None:
    settings = Settings(redis_url=None, database_url=None, data_dir=tmp_path)
    services = start_services(settings)
    try:
        assert services.redis_url.startswith("redis://127.0.0.1:")
        assert services.database_url.startswith("postgresql://postgres@127.0.0.1:")
        with redis.Redis.from_url(services.redis_url) as client:
            assert client.ping()
        with psycopg.connect(services.database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # Already running: a second call starts nothing and so owns nothing to stop.
        assert start_services(settings).started == []
    finally:
        services.stop()
    assert not EmbeddedRedis(tmp_path).is_running()
    assert not EmbeddedPostgres(tmp_path).is_running()
    assert stop_services(settings) == []


async def test_each_test_gets_an_empty_redis(redis_client: redis.asyncio.Redis) -> None:
    assert await redis_client.dbsize() == 0
    await redis_client.set("left-behind", "1")  # the next test's client must not see it


async def test_the_next_test_sees_none_of_it(redis_client: redis.asyncio.Redis) -> None:
    assert await redis_client.get("left-behind") is None


def test_each_test_gets_a_fresh_empty_database(pg_database_url: str, database_url: str) -> None:
    assert pg_database_url != database_url
    with psycopg.connect(pg_database_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_settings_point_at_the_test_servers(
    settings: Settings, redis_url: str, pg_database_url: str, tmp_path: Path
) -> None:
    assert (settings.redis_url, settings.database_url) == (redis_url, pg_database_url)
    assert settings.data_dir == tmp_path / "data"


def test_services_stop_leaves_a_server_someone_else_started_again(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(redis_url=None, database_url=database_url, data_dir=tmp_path)
    services = start_services(settings)
    redis_server = EmbeddedRedis(tmp_path)
    try:
        first = json.loads(redis_server.state_path.read_text())["pid"]
        os.kill(first, signal.SIGKILL)  # ours dies...
        assert wait_until(lambda: not pid_alive(first), 10)
        assert redis_server.start() == services.redis_url  # ...and another process starts one
        services.stop()
        assert redis_server.is_running()  # not ours: left alone
    finally:
        redis_server.stop()


def test_a_command_that_starts_a_server_says_so_once(tmp_path: Path, pg_database_url: str) -> None:
    from sync_worker import migrations
    from tests.test_cli import run_cli

    migrations.upgrade(pg_database_url)
    env = {"FLASHSALE_DATA_DIR": str(tmp_path / "data"), "FLASHSALE_DATABASE_URL": pg_database_url}
    try:
        first = run_cli("reconcile", cwd=tmp_path, timeout=60, **env)
        assert first.returncode == 0, first.stderr
        redis_url = EmbeddedRedis(tmp_path / "data").url
        assert redis_url is not None
        notes = first.stderr.strip().splitlines()
        assert len(notes) == 1 and notes[0].startswith(f"started Redis ({redis_url})"), notes
        assert "keep running" in notes[0] and "flashsale services down" in notes[0]
        again = run_cli("reconcile", cwd=tmp_path, timeout=60, **env)
        assert again.returncode == 0 and again.stderr == "", again.stderr  # nothing started
    finally:
        EmbeddedRedis(tmp_path / "data").stop()
