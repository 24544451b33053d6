"""The sync worker: partition streams → Postgres, every event exactly once.

Each round: read a batch (own pending entries first, then claims of dead consumers' entries, then
new ones), write it in ONE Postgres transaction, commit, then XACK. A crash anywhere before the
XACK redelivers the batch and the ledger's unique (partition, stream_id) turns it into a no-op.
In steady state the next batch is read and parsed while the current one is being written.

Postgres unavailable: back off and retry the same batch, reading nothing new, acknowledging
nothing. A batch Postgres refuses for its content (DataError, IntegrityError) is split into single
entries; an entry refused alone is poison: it goes to `sync_dead_letters` with an ERROR log line
and is acknowledged, so one bad event never blocks its partition. `stop()` (SIGTERM) lets the
batch in hand finish; during an outage the batch stays pending for the next worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import psycopg
from redis.exceptions import RedisError, ResponseError

from engine.connection import RedisClient
from engine.keys import KeySchema
from engine.streams import partition_lag
from sync_worker.consumer import StreamConsumer
from sync_worker.db import connect
from sync_worker.entries import Entry, PoisonEvent, Row, parse
from sync_worker.fencing import FenceKeeper
from sync_worker.metrics import WorkerMetrics
from sync_worker.settings import WorkerSettings
from sync_worker.writer import BatchResult, UnverifiedSource, prepare, sources_of, write_batch

log = logging.getLogger("flashsale.sync")
UPKEEP_S = 1.0  # trim and lag gauges at most this often
BACKOFF_MAX_S = 5.0
_DETERMINISTIC = (psycopg.DataError, psycopg.IntegrityError)


class Stopping(Exception):
    """Stop was requested while waiting for a server: the batch in hand stays pending."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A batch as read, and what it becomes: ledger rows, and poison entries with the reason."""

    batch: list[Entry]
    rows: list[Row]
    dead: list[tuple[Entry, str]]
    entry_of: dict[tuple[int, str], Entry]


def parse_batch(batch: list[Entry]) -> Parsed:
    rows: list[Row] = []
    dead: list[tuple[Entry, str]] = []
    entry_of: dict[tuple[int, str], Entry] = {}
    for entry in batch:
        try:
            row = parse(entry)
        except PoisonEvent as exc:
            dead.append(_poison(entry, str(exc)))
            continue
        rows.append(row)
        entry_of[row.key] = entry
    return Parsed(batch, rows, dead, entry_of)


class SyncWorker:
    def __init__(
        self,
        redis: RedisClient,
        database_url: str,
        settings: WorkerSettings,
        consumer: str,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.database_url = database_url
        self.schema = KeySchema(settings.partitions)
        self.streams = StreamConsumer(
            redis,
            self.schema,
            consumer,
            settings.worker_batch_size,
            settings.worker_block_ms,
            settings.worker_claim_idle_ms,
        )
        self.claim_every_s = max(settings.worker_claim_idle_ms / 2000, 0.05)
        self.metrics = metrics or WorkerMetrics()
        self.fences = FenceKeeper(redis, database_url, settings, self.metrics)
        self.stopping = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        log.info("sync worker %s on %d partition(s)", self.streams.consumer, self.schema.partitions)
        own, next_claim, next_upkeep, failures = True, 0.0, 0.0, 0
        # While one batch is written, the next is read and parsed: Postgres works on one core
        # while this process works on the other. Those entries are pending for this consumer
        # until acknowledged, so crashing with them in hand loses nothing; stop() writes them too.
        ahead: asyncio.Task[Parsed] | None = None
        fences = asyncio.create_task(self.fences.run(self.stopping))
        refused = 0  # rounds in a row whose batch came from a server not verified yet
        try:
            while not self.stopping.is_set() or ahead is not None:
                try:
                    now = time.monotonic()
                    parsed: Parsed | None = None
                    if ahead is not None:
                        parsed, ahead = await ahead, None
                        batch = parsed.batch
                    elif own:
                        await self.streams.ensure_groups()  # again after a Redis flush
                        batch = await self.streams.read_own()
                        own = bool(batch)
                    elif now >= next_claim:
                        next_claim = now + self.claim_every_s
                        claimed, batch = await self.streams.claim()
                        own = claimed > 0
                    else:
                        batch = await self.streams.read_new()
                    if batch:
                        if not (own or now >= next_claim or self.stopping.is_set()):
                            ahead = asyncio.create_task(self._read_ahead())
                        await self.process(batch, parsed)
                    if now >= next_upkeep:
                        next_upkeep = now + UPKEEP_S
                        await self._upkeep()
                    failures = refused = 0
                except UnverifiedSource as exc:
                    # A restart or failover: the fence check decides about the new server first.
                    if refused == 0:
                        log.info("%s: waiting for the fence check", exc)
                    refused += 1
                    own = True
                    await _cancel(ahead)
                    ahead = None
                    await self._pause(self.fences.poll_s)
                except (RedisError, OSError) as exc:
                    if isinstance(exc, ResponseError) and "NOGROUP" not in str(exc):
                        raise
                    self.metrics.redis_errors.inc()
                    failures += 1
                    log.warning("Redis call failed (%s); retrying", exc)
                    own = True  # whatever a read ahead took is pending: read it again
                    await _cancel(ahead)
                    ahead = None
                    await self._pause(_backoff(failures))
        except Stopping:
            log.warning("stopped while a server was unavailable: the batch stays pending")
        finally:
            await _cancel(ahead)
            self.stopping.set()
            await fences
            await self._close()
        log.info("sync worker %s stopped", self.streams.consumer)

    async def _read_ahead(self) -> Parsed:
        return parse_batch(await self.streams.read_new())

    async def process(self, batch: list[Entry], parsed: Parsed | None = None) -> BatchResult:
        started = time.perf_counter()
        p = parse_batch(batch) if parsed is None else parsed
        result = await self._store(p.rows, p.dead, p.entry_of)
        await self.streams.ack(batch)
        self.metrics.events.labels("inserted").inc(result.inserted)
        self.metrics.events.labels("duplicate").inc(result.duplicates)
        self.metrics.events.labels("dead_letter").inc(result.dead)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return result

    async def _store(
        self, rows: list[Row], dead: list[tuple[Entry, str]], entry_of: dict[tuple[int, str], Entry]
    ) -> BatchResult:
        failures = 0
        sources = sources_of(rows, [e for e, _ in dead], entry_of)
        while True:
            try:
                return await write_batch(await self._connection(), rows, dead, sources)
            except _DETERMINISTIC as exc:
                if len(rows) + len(dead) > 1:
                    return await self._isolate(rows, dead, entry_of)
                if rows:  # refused on its own: poison
                    rows, dead = [], [_poison(entry_of[rows[0].key], _describe(exc))]
                else:  # even its dead letter is refused: keep the id and the reason only
                    entry, why = dead[0]
                    dead = [(Entry(entry.partition, entry.stream_id, []), f"{why}; {exc}")]
            except (psycopg.Error, OSError) as exc:
                self.metrics.postgres_errors.inc()
                failures += 1
                hint = " (run `flashsale db upgrade`?)" if _is_schema(exc) else ""
                log.warning("Postgres write failed%s: %s; retrying", hint, _describe(exc))
                await self._close()
                await self._pause(_backoff(failures))

    async def _isolate(
        self, rows: list[Row], dead: list[tuple[Entry, str]], entry_of: dict[tuple[int, str], Entry]
    ) -> BatchResult:
        results = [await self._store([], [d], entry_of) for d in dead]
        results += [await self._store([row], [], entry_of) for row in rows]
        return BatchResult(
            sum(r.inserted for r in results),
            sum(r.duplicates for r in results),
            sum(r.dead for r in results),
        )

    async def _upkeep(self) -> None:
        try:
            self.metrics.trimmed.inc(await self.streams.trim())
            self.metrics.observe_lag(await partition_lag(self.redis, self.schema))
        except ResponseError as exc:  # housekeeping only: syncing goes on, the next round retries
            log.warning("stream upkeep failed: %s", exc)

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            conn = await connect(self.database_url)
            try:
                await prepare(conn)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close()
            except (psycopg.Error, OSError):
                pass  # it is gone either way

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Stopping


def _poison(entry: Entry, why: str) -> tuple[Entry, str]:
    log.error(
        "POISON event partition %d id %s parked in sync_dead_letters: %s",
        entry.partition,
        entry.stream_id,
        why,
    )
    return entry, why


async def _cancel(task: asyncio.Task[Parsed] | None) -> None:
    if task is not None:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, RedisError, OSError):
            pass  # its entries, if any were delivered, stay pending for this consumer


def _backoff(failures: int) -> float:
    return min(BACKOFF_MAX_S, 0.1 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"


def _is_schema(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn)
