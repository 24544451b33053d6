"""Shared by the failover and reconcile tests: a Redis of the test's own that it kills, restarts
and rewinds to an older append-only file, and buyers that record every answer with its time.
No tests here."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio
from redis.exceptions import RedisError

from engine.engine import ReservationEngine
from engine.errors import EngineError, PartitionRecovering
from engine.keys import KeySchema
from engine.types import CartLine, LocationConfig, SkuConfig
from flashsale.embedded import EmbeddedRedis
from flashsale.settings import Settings


def _aof(server: EmbeddedRedis) -> Path:
    """The append-only file (Redis 6) or directory (Redis 7, multi-part) the server loads."""
    directory = server.home / "appendonlydir"
    return directory if directory.exists() else server.home / "appendonly.aof"


def copy_aof(server: EmbeddedRedis, to: Path) -> None:
    """A copy of the append-only file as it is now: what a backup taken while selling holds (a
    command cut in half at its end is dropped when it loads, as after a crash)."""
    source = _aof(server)
    if source.is_dir():
        shutil.copytree(source, to)
    else:
        shutil.copyfile(source, to)


def put_back_aof(server: EmbeddedRedis, copy: Path) -> None:
    """Replaces the (stopped) server's append-only file with an older copy."""
    target = _aof(server)
    if target.is_dir():
        shutil.rmtree(target)
        shutil.copytree(copy, target)
    else:
        shutil.copyfile(copy, target)


def skus_over(schema: KeySchema, per_partition: int) -> list[str]:
    """SKU names, `per_partition` of them in each partition."""
    found: dict[int, list[str]] = {p.number: [] for p in schema.all()}
    n = 0
    while any(len(names) < per_partition for names in found.values()):
        name = f"item-{n}"
        names = found[schema.for_sku(name).number]
        if len(names) < per_partition:
            names.append(name)
        n += 1
    return [name for names in found.values() for name in names]


async def stock(engine: ReservationEngine, skus: list[str], on_hand: int) -> None:
    for name in skus:
        await engine.configure_sku(name, SkuConfig(locations=(LocationConfig("wh", on_hand),)))


@dataclass(frozen=True, slots=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    partition: int
    op: str  # reserve, commit, release
    reservation_id: str
    # "ok"; "refused" (any other engine refusal, or a release that found nothing to release);
    # "recovering" / "fenced" (PartitionRecovering); "unreachable" (no answer: the server died)
    outcome: str


@dataclass
class Buyers:
    """Concurrent buyers, each on an engine (and connection pool) of its own: reserve one unit of
    a random SKU, then commit it (one time in three) or release it. Every answer is recorded."""

    settings: Settings
    skus: list[str]
    count: int = 6
    pause_s: float = 0.004
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        for n in range(self.count):
            assert self.settings.redis_url
            engine = ReservationEngine(
                redis.asyncio.Redis.from_url(self.settings.redis_url), self.settings
            )
            await engine.start()
            self._tasks.append(asyncio.create_task(self._buy(engine, n)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _buy(self, engine: ReservationEngine, n: int) -> None:
        rng = random.Random(n)
        turn = 0
        try:
            while not self._stop.is_set():
                turn += 1
                rid = f"b{n}-{turn}"
                name = rng.choice(self.skus)
                part = engine.keys.for_sku(name).number
                held = engine.reserve(rid, f"c{n}", [CartLine(name, 1)], ttl_seconds=600)
                if await self._call(part, "reserve", rid, held):
                    await asyncio.sleep(self.pause_s)
                    if rng.random() < 1 / 3:
                        await self._call(part, "commit", rid, engine.commit(rid, f"o-{rid}"))
                    else:
                        await self._call(part, "release", rid, engine.release(rid))
                await asyncio.sleep(self.pause_s)
        finally:
            await engine.aclose()

    async def _call(self, part: int, op: str, rid: str, call: Awaitable[object]) -> bool:
        try:
            outcome = "ok" if await call is not None else "refused"
        except PartitionRecovering as exc:
            outcome = "fenced" if exc.fenced else "recovering"
        except EngineError:
            outcome = "refused"
        except (RedisError, OSError):
            outcome = "unreachable"
        self.answers.append(Answer(time.monotonic(), part, op, rid, outcome))
        return outcome == "ok"

    def acked(self, op: str, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        return [
            a for a in self.answers if a.op == op and a.outcome == "ok" and since <= a.at < until
        ]
