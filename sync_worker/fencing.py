"""The durable side of fencing (engine.fencing): after a Redis restart or failover, compare each
partition's Redis with Postgres before it sells again.

Every `worker_fence_poll_ms` the keeper asks each partition's server for its fence status (one
script call per partition). A partition whose marker does not name the server answering, or that
Postgres has not seen verified on that server, is compared under a lock on its `sync_partitions`
row (the row every batch write locks and checks, see writer.py):

- not behind (Postgres' newest stream id <= the stream's last generated id): Postgres accepts
  this server's entries from now on (`verified_run`), then the marker is set and it sells again;
- behind: Postgres accepts no entries of the partition, the partition is fenced (an ERROR log
  line names it, `flashsale worker status`, /readyz and /metrics show it) and stays so until
  `flashsale restore --partition N`, or the keeper restores it itself with `auto_restore`.

Because the comparison and every batch write lock the same row, a batch read from the server that
died is either counted in Postgres' newest id before the comparison or refused after it: a
late write of the old server's entries can never make a partition look newer than it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import psycopg
from psycopg.types.json import Jsonb
from redis.exceptions import RedisError

from engine.connection import RedisClient
from engine.fencing import FenceStatus, fence, statuses, stream_id_text, verify
from engine.keys import KeySchema
from engine.scripts import Scripts
from sync_worker.db import connect
from sync_worker.metrics import WorkerMetrics
from sync_worker.restore import run_restore
from sync_worker.settings import WorkerSettings

log = logging.getLogger("flashsale.sync")
BACKOFF_MAX_S = 0.4  # short: a partition's resume waits on this loop (a connect per try)

_ENSURE = "INSERT INTO sync_partitions (partition) VALUES (%s) ON CONFLICT DO NOTHING"
_LOCK = """
SELECT high_ms, high_seq, verified_run FROM sync_partitions WHERE partition = %s FOR UPDATE
"""
_ACCEPT = """
UPDATE sync_partitions SET verified_run = %s, verified_at = now(), fenced_at = NULL,
    fenced_reason = NULL
WHERE partition = %s
"""
_REFUSE = """
UPDATE sync_partitions SET verified_run = NULL, fenced_at = now(), fenced_reason = %s
WHERE partition = %s
"""


class FenceKeeper:
    def __init__(
        self,
        redis: RedisClient,
        database_url: str,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
    ) -> None:
        self.redis = redis
        self.database_url = database_url
        self.settings = settings
        self.schema = KeySchema(settings.partitions)
        self.script = Scripts(redis)["fence"]
        self.metrics = metrics
        self.poll_s = settings.worker_fence_poll_ms / 1000
        self._conn: psycopg.AsyncConnection | None = None
        self._accepted: dict[int, str] = {}  # partition -> run_id both sides agree on
        self._reported: dict[int, str] = {}  # partition -> run_id whose fence was logged
        self._since: dict[int, float] = {}  # partition -> when it was first seen unverified

    async def run(self, stopping: asyncio.Event) -> None:
        failures = 0
        while not stopping.is_set():
            try:
                await self.check()
            except (RedisError, OSError, psycopg.Error) as exc:
                if failures == 0:
                    log.warning("fence check failed (%s); retrying", exc)
                failures += 1
                if isinstance(exc, psycopg.Error):
                    await self.close()
            except Exception:  # a bug here must not stop the checks: nothing would sell again
                if failures == 0:
                    log.exception("fence check failed; retrying")
                failures += 1
                await self.close()
            else:
                if failures:
                    log.info("fence check works again after %d failed round(s)", failures)
                failures = 0
            pause = min(BACKOFF_MAX_S, self.poll_s * 2 ** min(failures, 6))
            try:
                await asyncio.wait_for(stopping.wait(), timeout=pause)
            except TimeoutError:
                pass
        await self.close()

    async def check(self) -> Sequence[FenceStatus]:
        """One round over every partition; returns each one's status as it was read."""
        found = await statuses(self.script, self.schema)
        for st in found:
            if st.verified and self._accepted.get(st.partition) == st.run:
                self._observe(st, "verified")
                continue
            self._since.setdefault(st.partition, time.monotonic())
            if st.fenced is not None:
                self._observe(st, "fenced")
                await self._fenced(st)
                continue
            self._observe(st, await self._compare(st))
        return found

    async def _compare(self, st: FenceStatus) -> str:
        """Compares one partition with Postgres; returns its state afterwards."""
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute(_ENSURE, (st.partition,))
            cur = await conn.execute(_LOCK, (st.partition,))
            row = await cur.fetchone()
            assert row is not None
            high, accepted = (int(row[0]), int(row[1])), row[2]
            if st.verified and accepted == st.run:
                self._accepted[st.partition] = st.run
                return "verified"
            behind = high > st.last
            if behind:
                reason = {
                    "postgres_newest": stream_id_text(high),
                    "redis_last": stream_id_text(st.last),
                    "redis_run": st.run,
                }
                await conn.execute(_REFUSE, (Jsonb(reason), st.partition))
            else:
                await conn.execute(_ACCEPT, (st.run, st.partition))
        part = self.schema.partition(st.partition)
        if behind:
            done = await fence(self.script, part, st.run, reason)
            if done.changed:
                await self._fenced(done)
            return "fenced" if done.changed else "recovering"
        done = await verify(self.script, part, st.run, high)
        if not done.changed:
            return "recovering"  # the server changed since: the next round compares again
        self._accepted[st.partition] = st.run
        waited = time.monotonic() - self._since.pop(st.partition, time.monotonic())
        log.info(
            "partition %d verified on Redis %s (its stream at %s, Postgres at %s) after %.2f s",
            st.partition,
            st.run[:8],
            stream_id_text(st.last),
            stream_id_text(high),
            waited,
        )
        return "verified"

    async def _fenced(self, st: FenceStatus) -> None:
        if self._reported.get(st.partition) != st.run:
            self._reported[st.partition] = st.run
            why = st.fenced or {}
            log.error(
                "partition %d FENCED: Postgres holds events up to %s, its Redis (%s) only up to "
                "%s; it sells nothing until `flashsale restore --partition %d`%s",
                st.partition,
                why.get("postgres_newest", "?"),
                st.run[:8],
                why.get("redis_last", stream_id_text(st.last)),
                st.partition,
                " (restoring now: auto_restore is on)" if self.settings.auto_restore else "",
            )
        if self.settings.auto_restore:
            conn = await self._connection()
            report, _ = await run_restore(
                self.redis, conn, self.settings, force=True, partition=st.partition
            )
            self._accepted.pop(st.partition, None)  # the next round confirms the rebuild
            log.warning(
                "partition %d restored from Postgres (%d SKUs, %d holds); it sells again",
                st.partition,
                report.skus,
                report.holds,
            )

    def _observe(self, st: FenceStatus, state: str) -> None:
        label = str(st.partition)
        self.metrics.fenced.labels(label).set(1 if state == "fenced" else 0)
        self.metrics.unverified.labels(label).set(0 if state == "verified" else 1)
        if state == "verified":
            self._since.pop(st.partition, None)

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.database_url)
            await self._conn.set_autocommit(True)  # transactions are explicit
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close()
            except (psycopg.Error, OSError):
                pass
