"""`flashsale bench` never writes into the dev stack's Redis or Postgres."""

from __future__ import annotations

from pathlib import Path

import redis
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.embedded import EmbeddedRedis
from flashsale.settings import Settings


def test_the_quick_bench_leaves_the_dev_redis_untouched(settings: Settings, tmp_path: Path) -> None:
    # The dev stack: its Redis named in the environment (as `make run` children have it) and
    # its data folder; the bench is given only a Postgres of its own.
    dev_redis, dev_dir = str(settings.redis_url), tmp_path / "dev"
    env = {"FLASHSALE_REDIS_URL": dev_redis, "FLASHSALE_DATA_DIR": str(dev_dir)}
    argv = ["bench", "--quick", "--designs", "redis-limit,engine,pg-conditional"]
    argv += ["--memory-holds", "200", "--latency-calls", "0"]
    argv += ["--database-url", str(settings.database_url)]
    argv += ["--reports-dir", str(tmp_path / "reports")]

    result = CliRunner().invoke(app, argv, env=env)

    assert result.exit_code == 0, result.output
    with redis.Redis.from_url(dev_redis) as client:
        assert client.dbsize() == 0, client.keys("*")[:10]
    assert "FLASHSALE_REDIS_URL ignored" in result.output
    assert "not comparable" in result.output
    # Its own embedded Redis lived in the bench's sub-folder, and was stopped afterwards.
    bench_redis = EmbeddedRedis(dev_dir / "bench")
    assert (dev_dir / "bench" / "redis").is_dir() and not bench_redis.is_running()
