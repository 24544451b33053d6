"""A server that does not answer is one line naming its URL (password masked) and exit 1."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashsale.ui import masked
from sync_worker import migrations
from tests.conftest import fresh_database
from tests.test_cli import run_cli

# Port 1 on loopback: nothing listens there, a connection is refused at once.
DEAD_REDIS = "redis://:s3cret@127.0.0.1:1/0"
DEAD_REDIS_SHOWN = "redis://:***@127.0.0.1:1/0"
DEAD_POSTGRES = "postgresql://flash:s3cret@127.0.0.1:1/flashsale"
DEAD_POSTGRES_SHOWN = "postgresql://flash:***@127.0.0.1:1/flashsale"

REDIS_COMMANDS = [
    ("reconcile",),
    ("restore",),
    ("worker", "status"),
    ("stock", "show", "demo-sneaker"),
    ("sweeper", "--once"),
]
POSTGRES_COMMANDS = [
    ("reconcile",),
    ("restore",),
    ("db", "current"),
]


@pytest.fixture(scope="module")
def migrated_database(database_url: str) -> Iterator[str]:
    with fresh_database(database_url, prefix="unreachable") as url:
        migrations.upgrade(url)
        yield url


def assert_one_line_naming(result: subprocess.CompletedProcess[str], shown: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and shown in lines[0], result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", REDIS_COMMANDS, ids=" ".join)
def test_an_unreachable_redis_is_one_line_and_exit_1(
    command: tuple[str, ...], migrated_database: str, tmp_path: Path
) -> None:
    result = run_cli(
        *command,
        cwd=tmp_path,
        timeout=60,
        FLASHSALE_REDIS_URL=DEAD_REDIS,
        FLASHSALE_DATABASE_URL=migrated_database,
    )
    assert_one_line_naming(result, DEAD_REDIS_SHOWN)
    assert "Redis" in result.stderr


@pytest.mark.parametrize("command", POSTGRES_COMMANDS, ids=" ".join)
def test_an_unreachable_postgres_is_one_line_and_exit_1(
    command: tuple[str, ...], redis_url: str, tmp_path: Path
) -> None:
    result = run_cli(
        *command,
        cwd=tmp_path,
        timeout=60,
        FLASHSALE_REDIS_URL=redis_url,
        FLASHSALE_DATABASE_URL=DEAD_POSTGRES,
    )
    assert_one_line_naming(result, DEAD_POSTGRES_SHOWN)
    assert "Postgres" in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw@h:6379/0", "redis://user:***@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
    ],
)
def test_masked_hides_every_password(url: str, shown: str) -> None:
    assert masked(url) == shown
