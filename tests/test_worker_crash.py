"""The worker dies (SIGKILL), stops (SIGTERM) and loses Postgres mid-sale: no event is lost or
written twice, and Postgres ends equal to Redis."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.streams import CONSUMER_GROUP, partition_lag
from flashsale.embedded import EmbeddedPostgres
from flashsale.settings import Settings
from sync_worker import migrations
from tests.worker_support import (
    Auditor,
    Load,
    assert_consistent,
    fast,
    running_worker,
    seed,
    start_engine,
    wait_synced,
    worker_process,
)

KILLS = 20


async def started(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Returns once the worker logged that it runs (imports done, servers found)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stderr.readline)
        if b"sync worker" in line:
            return
        assert line, f"worker exited early with {proc.wait()}"
    raise AssertionError("the worker did not start")


async def pending_of(engine_redis: object, streams: list[str], consumer: str) -> int:
    total = 0
    for stream in streams:
        rows = await engine_redis.xpending_range(  # type: ignore[attr-defined]
            stream, CONSUMER_GROUP, "-", "+", 10_000, consumername=consumer
        )
        total += len(rows)
    return total


@pytest.mark.crash
async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(settings: Settings) -> None:
    assert settings.database_url
    migrations.upgrade(settings.database_url)
    cfg = fast(settings, worker_batch_size=20, worker_claim_idle_ms=150)
    engine = await start_engine(cfg)
    auditor = Auditor(engine.redis, engine.keys)
    await auditor.create()
    await seed(engine)
    load, stop, rng = Load(engine), asyncio.Event(), random.Random(11)
    background = asyncio.gather(load.run(stop), auditor.run(stop))
    killed_with_work_in_hand = 0
    try:
        for n in range(KILLS):
            # Half the restarts reuse a name (own pending list), half take a new one (XAUTOCLAIM).
            proc = worker_process(cfg, "crashy" if n % 2 else None)
            await started(proc)
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            proc.kill()
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
            lag = await partition_lag(engine.redis, engine.keys)
            killed_with_work_in_hand += sum(p.pending for p in lag) > 0
    finally:
        stop.set()
        await background
    async with running_worker(cfg, "finisher"):
        await wait_synced(engine.redis, engine.keys, timeout=90)
    await auditor.drain()
    assert load.ok > 500
    await assert_consistent(engine, cfg, auditor.seen)
    assert killed_with_work_in_hand >= KILLS // 4  # the kills did land mid-batch
    await engine.aclose()


async def test_sigterm_lets_the_batch_in_hand_finish(settings: Settings) -> None:
    assert settings.database_url
    migrations.upgrade(settings.database_url)
    cfg = fast(settings)
    engine = await start_engine(cfg)
    await seed(engine)
    load, stop = Load(engine), asyncio.Event()
    background = asyncio.create_task(load.run(stop))
    proc = worker_process(cfg, "graceful")
    try:
        await started(proc)
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        stop.set()
        await background
        if proc.poll() is None:
            proc.kill()
    streams = [p.events for p in engine.keys.all()]
    assert await pending_of(engine.redis, streams, "graceful") == 0
    assert proc.stderr is not None
    assert b"stopped" in proc.stderr.read()
    await engine.aclose()


class Forwarder:
    """A TCP port that forwards to wherever the private Postgres listens now: a restarted
    Postgres may get another port (the old one lingers in TIME_WAIT), the worker keeps its URL."""

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server
        self.port = 0
        self._listener: asyncio.Server | None = None

    async def start(self) -> str:
        self._listener = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]
        url = self.server.url
        assert url
        return url.replace(f":{urlsplit(url).port}/", f":{self.port}/")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self.server.url
        try:
            assert target
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", urlsplit(target).port)
        except (OSError, AssertionError):
            writer.close()  # Postgres is down: the client sees a refused session
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def test_a_postgres_outage_loses_nothing(settings: Settings, tmp_path: Path) -> None:
    """The sale goes on while Postgres is down; the worker backs off, then catches up."""
    server = EmbeddedPostgres(tmp_path / "private-pg")
    server.start()
    forwarder = Forwarder(server)
    try:
        url = await forwarder.start()
        await asyncio.to_thread(migrations.upgrade, url)
        cfg = fast(settings.model_copy(update={"database_url": url}))
        engine = await start_engine(cfg)
        auditor = Auditor(engine.redis, engine.keys)
        await auditor.create()
        await seed(engine)
        load, stop = Load(engine), asyncio.Event()
        async with running_worker(cfg) as worker:
            background = asyncio.gather(load.run(stop), auditor.run(stop))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.stop)
            sold_before = load.ok
            await asyncio.sleep(3.0)
            sold_during = load.ok - sold_before
            behind = await partition_lag(engine.redis, engine.keys)
            await asyncio.to_thread(server.start)
            await asyncio.sleep(1.0)
            stop.set()
            await background
            await wait_synced(engine.redis, engine.keys, timeout=60)
        assert sold_during > 50, "the engine kept selling while Postgres was down"
        assert any(not p.synced for p in behind)
        errors = worker.metrics.registry.get_sample_value("flashsale_sync_postgres_errors_total")
        assert errors and errors > 0
        await auditor.drain()
        await assert_consistent(engine, cfg, auditor.seen)
        await engine.aclose()
    finally:
        await forwarder.close()
        server.stop()
