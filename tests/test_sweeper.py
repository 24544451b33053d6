"""The sweeper: one pass reclaims every due hold, and the process outlives a Redis outage."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from engine import CartLine, ReservationEngine
from flashsale.embedded import EmbeddedRedis
from flashsale.procs import wait_until
from tests.engine_support import check_invariants, kill_redis, make_engine, sku
from tests.test_cli import clean_env


@pytest.fixture
async def engine(redis_client: object, redis_url: str) -> AsyncIterator[ReservationEngine]:
    eng = await make_engine(redis_url)
    yield eng
    await eng.aclose()


async def test_one_sweep_reclaims_every_due_hold_so_the_next_buyer_is_served_at_once(
    engine: ReservationEngine,
) -> None:
    # 150 expired 1-unit holds, more than one reclaim batch (100): after one pass every unit is
    # back, so a reserve of 120 succeeds the first time, not only on its retry.
    await engine.configure_sku("tee", sku(150))
    for i in range(150):
        await engine.reserve(f"r{i}", f"c{i}", [CartLine("tee", 1)], ttl_seconds=5)
    engine.clock_offset_ms = 6000
    assert await engine.sweep() == 150
    assert await engine.redis.zcard(engine.keys.for_sku("tee").holds("tee")) == 0
    held = await engine.reserve("big", "buyer", [CartLine("tee", 120)])
    assert held.status == "held"
    await check_invariants(engine, ["tee"])


@pytest.mark.slow
async def test_the_sweeper_survives_a_redis_kill_and_reclaims_holds_made_after_the_restart(
    own_redis: EmbeddedRedis, database_url: str, tmp_path: Path
) -> None:
    url = own_redis.url
    assert url is not None
    setup = await make_engine(url)
    await setup.configure_sku("quiet", sku(5))
    await setup.aclose()

    log_path = tmp_path / "sweeper.log"
    with log_path.open("w") as log:
        sweeper = subprocess.Popen(
            [sys.executable, "-m", "flashsale", "sweeper", "--interval", "0.2"],
            cwd=tmp_path,
            env=clean_env(
                FLASHSALE_REDIS_URL=url,
                FLASHSALE_DATABASE_URL=database_url,  # given: the sweeper starts no server
                FLASHSALE_DATA_DIR=str(tmp_path / "data"),
                # No sync worker runs here to verify the restarted Redis against Postgres: the
                # sweeper and the engine below adopt it as it is.
                FLASHSALE_FENCING="false",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_until(lambda: "sweeper running" in log_path.read_text(), 60), (
            log_path.read_text()
        )
        kill_redis(own_redis)
        time.sleep(2)  # several failed passes
        assert sweeper.poll() is None, log_path.read_text()
        assert own_redis.start() == url  # same port, same AOF

        engine = await make_engine(url, fencing=False)
        try:
            await engine.reserve("late", "c1", [CartLine("quiet", 1)], ttl_seconds=1)
            holds = engine.keys.for_sku("quiet").holds("quiet")
            # Nobody reads or writes the SKU: only the sweeper can give the unit back.
            with redis.Redis.from_url(url) as raw:
                assert wait_until(lambda: raw.zcard(holds) == 0, 10), log_path.read_text()
            assert (await engine.inventory("quiet")).total.available == 5
            await check_invariants(engine, ["quiet"])
        finally:
            await engine.aclose()
        assert sweeper.poll() is None, log_path.read_text()
    finally:
        sweeper.send_signal(signal.SIGTERM)
        sweeper.wait(timeout=30)
    output = log_path.read_text()
    assert "Traceback" not in output, output
    # One line when the outage starts and one when it ends, not one per failed attempt.
    assert output.count("Redis unavailable") == 1, output
    assert output.count("Redis reachable again") == 1, output
    assert sweeper.returncode == 0, output
