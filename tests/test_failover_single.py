"""A single Redis node killed while buyers buy: restarted from the same append-only file, or from
an older copy of it. Real servers throughout: a Redis of the test's own, the suite's Postgres, a
sync worker in process, several engines reserving and committing, every answer recorded with its
time. Each test prints what it measured (run with -s to see it)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.engine import ReservationEngine
from engine.fencing import FenceStatus, statuses
from engine.scripts import Scripts
from flashsale.embedded import EmbeddedRedis
from flashsale.settings import Settings
from sync_worker import migrations
from sync_worker.db import connect
from sync_worker.reconcile import reconcile
from tests.engine_support import kill_redis, redis_of_its_own
from tests.failover_support import (
    Answer,
    Buyers,
    copy_aof,
    put_back_aof,
    skus_over,
    stock,
)
from tests.test_cli import clean_env
from tests.worker_support import fast, running_worker, start_engine, wait_synced

pytestmark = pytest.mark.slow

MAX_REFUSAL_S = 2.0
ON_HAND = 400  # per SKU: enough that selling goes on through every test


@dataclass
class Sale:
    settings: Settings
    server: EmbeddedRedis
    skus: list[str]
    tmp: Path


@pytest.fixture
async def sale(pg_database_url: str, tmp_path: Path) -> AsyncIterator[Sale]:
    migrations.upgrade(pg_database_url)
    with redis_of_its_own(tmp_path / "redis") as server:
        assert server.url
        settings = fast(
            Settings(redis_url=server.url, database_url=pg_database_url, data_dir=tmp_path / "data")
        )
        engine = await start_engine(settings)
        skus = skus_over(engine.keys, per_partition=2)
        await stock(engine, skus, ON_HAND)
        await engine.aclose()
        yield Sale(settings, server, skus, tmp_path)


def refusal_windows(answers: list[Answer], since: float) -> dict[int, float]:
    """Per partition, the longest stretch after `since` in which no call was let through: from
    `since` (or the first refusal of a later stretch) to the next acknowledged call. Refusals for
    the request itself (no stock, nothing to release) neither open nor close a stretch."""
    windows: dict[int, float] = {}
    for part in sorted({a.partition for a in answers}):
        start: float | None = since
        longest = 0.0
        for a in sorted((a for a in answers if a.partition == part and a.at >= since), key=_at):
            if a.outcome == "ok":
                if start is not None:
                    longest = max(longest, a.at - start)
                start = None
            elif a.outcome != "refused" and start is None:
                start = a.at
        assert start is None, f"partition {part} never sold again"
        windows[part] = longest
    return windows


def _at(answer: Answer) -> float:
    return answer.at


def acknowledged(answers: list[Answer]) -> dict[tuple[int, str], str]:
    """The status each reservation must have from what was acknowledged to its buyer. One with a
    call that got no answer (the server died under it) may be either way: it is left out."""
    status: dict[tuple[int, str], str] = {}
    unsure: set[tuple[int, str]] = set()
    after = {"reserve": "held", "commit": "committed", "release": "released"}
    for a in sorted(answers, key=_at):
        key = (a.partition, a.reservation_id)
        if a.outcome == "unreachable":
            unsure.add(key)
        elif a.outcome == "ok":
            status[key] = after[a.op]
    return {key: st for key, st in status.items() if key not in unsure}


async def redis_statuses(
    engine: ReservationEngine, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], str]:
    found: dict[tuple[int, str], str] = {}
    async with engine.redis.pipeline(transaction=False) as pipe:
        for part, rid in keys:
            pipe.hget(engine.keys.partition(part).reservation(rid), "st")
        for key, st in zip(keys, await pipe.execute(), strict=True):
            if st is not None:
                found[key] = st.decode()
    return found


async def postgres_statuses(settings: Settings) -> dict[tuple[int, str], str]:
    assert settings.database_url
    async with await connect(settings.database_url) as conn:
        cur = await conn.execute("SELECT partition, reservation_id, status FROM reservations")
        return {(int(p), str(rid)): str(st) for p, rid, st in await cur.fetchall()}


async def assert_nothing_lost(
    engine: ReservationEngine, settings: Settings, expected: dict[tuple[int, str], str]
) -> None:
    """Redis and Postgres both hold every reservation in the status expected of it."""
    keys = sorted(expected)
    in_redis = await redis_statuses(engine, keys)
    in_postgres = await postgres_statuses(settings)
    lost_redis = {k: (st, in_redis.get(k)) for k, st in expected.items() if in_redis.get(k) != st}
    lost_pg = {
        k: (st, in_postgres.get(k)) for k, st in expected.items() if in_postgres.get(k) != st
    }
    assert not lost_redis, f"{len(lost_redis)} lost in Redis: {list(lost_redis.items())[:5]}"
    assert not lost_pg, f"{len(lost_pg)} lost in Postgres: {list(lost_pg.items())[:5]}"


async def assert_stock_holds(
    engine: ReservationEngine, settings: Settings, skus: list[str]
) -> None:
    """No unit oversold or counted twice: per SKU, the holds add up to `reserved`, nothing is
    negative, reserved + committed never exceed on hand; over all SKUs, Postgres has one held or
    committed reservation per unit Redis counts reserved or committed."""
    reserved = committed = 0
    for name in skus:
        snap = await engine.inventory(name)
        members = await engine.redis.zrange(engine.keys.for_sku(name).holds(name), 0, -1)
        held = 0
        for raw in members:  # "reservation|customer|location=quantity;..."
            allocations = str(raw, "utf-8").split("|")[2]  # type: ignore[arg-type]
            held += sum(int(alloc.split("=")[1]) for alloc in allocations.split(";"))
        (level,) = snap.locations
        assert level.on_hand == ON_HAND, level
        assert level.reserved >= 0 and level.committed >= 0, level
        assert level.reserved == held, (name, level, held)
        assert level.reserved + level.committed <= level.on_hand, level
        reserved += level.reserved
        committed += level.committed
    in_postgres = list((await postgres_statuses(settings)).values())
    assert (in_postgres.count("held"), in_postgres.count("committed")) == (reserved, committed)


async def assert_reconciled(engine: ReservationEngine, settings: Settings) -> None:
    assert settings.database_url
    async with await connect(settings.database_url) as conn:
        result = await reconcile(engine.redis, conn, engine.keys, deep=True)
    assert not result.failed, (result.drifts[:10], result.sequences)
    assert result.unsynced_applied == 0


async def fence_statuses(engine: ReservationEngine) -> dict[int, FenceStatus]:
    found = await statuses(Scripts(engine.redis)["fence"], engine.keys)
    return {st.partition: st for st in found}


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """A `flashsale` command on this test's servers, in a process of its own."""
    env = clean_env(
        FLASHSALE_REDIS_URL=str(settings.redis_url),
        FLASHSALE_DATABASE_URL=str(settings.database_url),
        FLASHSALE_PARTITIONS=str(settings.partitions),
        FLASHSALE_DATA_DIR=str(settings.data_dir),
    )
    return subprocess.run(
        [sys.executable, "-m", "flashsale", *args],
        env=env,
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def restart(server: EmbeddedRedis, older: Path | None = None) -> float:
    """SIGKILL, then the same server again (from `older`, when given); when it answers."""
    url = server.url
    kill_redis(server)
    if older is not None:
        put_back_aof(server, older)
    assert await asyncio.to_thread(server.start) == url  # same port
    return time.monotonic()


async def test_a_restart_from_the_same_file_loses_nothing_and_sells_again_at_once(
    sale: Sale,
) -> None:
    buyers = Buyers(sale.settings, sale.skus)
    async with running_worker(sale.settings):
        await buyers.start()
        await asyncio.sleep(1.5)
        up = await restart(sale.server)
        await asyncio.sleep(3.0)
        await buyers.stop()
        engine = await start_engine(sale.settings)
        await wait_synced(engine.redis, engine.keys)  # type: ignore[arg-type]
    try:
        windows = refusal_windows(buyers.answers, up)
        expected = acknowledged(buyers.answers)
        outcomes = Counter(a.outcome for a in buyers.answers)
        print(
            f"\nsame file: {len(buyers.acked('reserve'))} reserves, "
            f"{len(buyers.acked('commit'))} commits acknowledged ({dict(outcomes)}); longest "
            f"refusal after the restart per partition: "
            f"{ {p: round(s, 3) for p, s in windows.items()} } s"
        )
        assert max(windows.values()) < MAX_REFUSAL_S, windows
        await assert_nothing_lost(engine, sale.settings, expected)
        print(f"lost: none of {len(expected)} reservations whose every call was answered")
        await assert_stock_holds(engine, sale.settings, sale.skus)
        await assert_reconciled(engine, sale.settings)
    finally:
        await engine.aclose()


@dataclass
class Rewind:
    buyers: Buyers
    up: float  # when the restarted server (with the older file) answered
    fenced_at: dict[int, float]  # when the worker fenced each partition (its ERROR line)
    resumed_at: dict[int, float]  # when each partition's restore began
    at_fence: dict[tuple[int, str], str]  # Postgres' reservations while the partitions were fenced
    before_kill: dict[tuple[int, str], str]  # what buyers had been told before the kill


class FenceLog(logging.Handler):
    """When the worker fenced each partition (its ERROR line; with auto_restore it restores the
    partition right after writing it)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.fenced: dict[int, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        partition = record.args[0] if isinstance(record.args, tuple) else None
        if "FENCED" in str(record.msg) and isinstance(partition, int):
            self.fenced.setdefault(partition, time.monotonic())


async def rewound_sale(sale: Sale, *, auto_restore: bool) -> Rewind:
    """Buyers buy, the append-only file is copied, they buy ~2 s more (the worker syncs it), the
    server is killed and restarted from the copy while they keep trying; the partitions are then
    restored (by `flashsale restore --partition N`, or by the worker itself)."""
    settings = sale.settings.model_copy(update={"auto_restore": auto_restore})
    buyers = Buyers(settings, sale.skus)
    older = sale.tmp / "older-aof"
    fences = FenceLog()
    logging.getLogger("flashsale.sync").addHandler(fences)
    parts = list(range(settings.partitions))
    try:
        async with running_worker(settings):
            await buyers.start()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(copy_aof, sale.server, older)
            await asyncio.sleep(2.0)
            killed = time.monotonic()
            up = await restart(sale.server, older)
            before_kill = acknowledged([a for a in buyers.answers if a.at < killed])

            async def all_fenced() -> bool:
                return sorted(fences.fenced) == parts

            await wait_for(all_fenced, 10, "the worker did not fence the rewound partitions")
            # From here the worker writes nothing of these partitions until they are restored.
            at_fence = await postgres_statuses(settings)
            if auto_restore:
                resumed_at = dict(fences.fenced)  # it restores each one as it fences it
            else:
                resumed_at = await restore_by_hand(settings, parts)

            async def all_sell_again() -> bool:
                return all(
                    any(
                        a.outcome == "ok" and a.partition == part and a.at > resumed_at[part]
                        for a in buyers.answers
                    )
                    for part in parts
                )

            # A restore on a loaded machine can take more than a second: wait for the sale to
            # resume on every partition rather than for a fixed time (check_rewind asserts it).
            await wait_for(all_sell_again, 20, "a restored partition did not sell again")
            await asyncio.sleep(0.3)  # a little selling after the restore
            await buyers.stop()
            engine = await start_engine(settings)
            try:
                await wait_synced(engine.redis, engine.keys)  # type: ignore[arg-type]
            finally:
                await engine.aclose()
    finally:
        logging.getLogger("flashsale.sync").removeHandler(fences)
    return Rewind(buyers, up, fences.fenced, resumed_at, at_fence, before_kill)


async def restore_by_hand(settings: Settings, parts: list[int]) -> dict[int, float]:
    """While buyers keep trying: reconcile names every partition fenced, then each is restored by
    `flashsale restore --partition N`; when each restore began."""
    engine = await start_engine(settings)
    try:
        for st in (await fence_statuses(engine)).values():
            assert st.state == "fenced", st
    finally:
        await engine.aclose()
    await asyncio.sleep(0.3)  # buyers keep trying on the fenced partitions
    checked = await asyncio.to_thread(cli, settings, "reconcile")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    for part in parts:
        assert f"partition {part} fenced" in checked.stdout, checked.stdout
    began: dict[int, float] = {}
    for part in parts:
        began[part] = time.monotonic()
        done = await asyncio.to_thread(cli, settings, "restore", "--partition", str(part))
        assert done.returncode == 0, done.stdout + done.stderr
    return began


async def check_rewind(sale: Sale, run: Rewind, label: str) -> None:
    answers = run.buyers.answers
    for part, fenced in run.fenced_at.items():
        mine = [a for a in answers if a.partition == part and a.at >= run.up]
        early = [a for a in mine if a.at < run.resumed_at[part] and a.outcome == "ok"]
        assert not early, f"acknowledged on rewound partition {part} before its restore: {early}"
        # Once the worker compared, the buyers are told the partition is fenced.
        waiting = [a.outcome for a in mine if fenced + 0.1 < a.at < run.resumed_at[part]]
        assert set(waiting) <= {"fenced", "refused"}, set(waiting)
        assert any(a.outcome == "ok" for a in mine if a.at > run.resumed_at[part]), (
            f"partition {part} did not sell again"
        )
    # What Postgres had when the partitions were fenced, then what buyers were told since.
    expected = dict(run.at_fence)
    since = acknowledged([a for a in answers if a.at >= run.up])
    expected.update(since)
    lost = {
        k: st for k, st in run.before_kill.items() if run.at_fence.get(k) != st and k not in since
    }
    lost_commits = [k for k, st in lost.items() if st == "committed"]
    to_fence = {p: round(t - run.up, 3) for p, t in run.fenced_at.items()}
    sold = {
        p: round(
            min(a.at for a in answers if a.partition == p and a.at > t and a.outcome == "ok")
            - run.up,
            3,
        )
        for p, t in run.resumed_at.items()
    }
    print(
        f"\n{label}: after the restart, fenced at {to_fence} s, sold again at {sold} s; "
        f"acknowledged before the kill but not synced yet (gone with the older file): "
        f"{len(lost)} reservations ({len(lost_commits)} commits) of {len(run.before_kill)}"
    )
    engine = await start_engine(sale.settings)
    try:
        await assert_nothing_lost(engine, sale.settings, expected)
        await assert_stock_holds(engine, sale.settings, sale.skus)
        await assert_reconciled(engine, sale.settings)
    finally:
        await engine.aclose()


async def test_b_an_older_file_is_fenced_named_by_reconcile_and_restored_from_postgres(
    sale: Sale,
) -> None:
    run = await rewound_sale(sale, auto_restore=False)
    await check_rewind(sale, run, "older file, restore --partition")
    deep = cli(sale.settings, "reconcile", "--deep")
    assert deep.returncode == 0 and "no drift" in deep.stdout, deep.stdout + deep.stderr


async def test_c_an_older_file_comes_back_by_itself_with_auto_restore(sale: Sale) -> None:
    run = await rewound_sale(sale, auto_restore=True)
    await check_rewind(sale, run, "older file, auto_restore")
