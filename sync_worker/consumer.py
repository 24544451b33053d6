"""The Redis side of the worker: the consumer group on every partition stream.

    read_own()   this consumer's pending entries (left by a crash under the same name, or claimed)
    read_new()   XREADGROUP `>` on every partition at once, blocking up to block_ms (on a
                 cluster: one call per partition stream, concurrently, as streams of different
                 slots cannot share a call)
    claim()      XAUTOCLAIM entries other consumers left pending longer than claim_idle_ms
    ack()        XACK, only after the Postgres transaction committed
    trim()       XTRIM MINID below every group's oldest unacknowledged entry, never further

Claims use JUSTID and the entries are then read as our own pending ones: that read also returns
entries deleted from the stream (as empty field sets), which a claim on Redis 6.2 would hide.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import ResponseError

from engine.connection import RedisClient, is_cluster
from engine.keys import KeySchema
from engine.scripts import load_script_source
from engine.streams import CONSUMER_GROUP, parse_stream_id
from sync_worker.entries import Entry

log = logging.getLogger("flashsale.sync")
_ZERO = b"0-0"
_CLAIM_STEPS = 10
# On a cluster a blocking read waits on each partition alone; it is cut this short so that
# entries arriving on one partition are not held back by the wait on the others.
_CLUSTER_BLOCK_MS = 100
# Sent with every read: the Postgres side writes a partition's entries only while they come from
# the Redis server verified for it (engine.fencing, sync_worker.fencing).
_RUN_ID = load_script_source("run_id")


class StreamConsumer:
    def __init__(
        self,
        redis: RedisClient,
        schema: KeySchema,
        consumer: str,
        batch: int,
        block_ms: int,
        claim_idle_ms: int,
    ) -> None:
        self.redis = redis
        self.cluster = is_cluster(redis)
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.partition_of = {part.events.encode(): part.number for part in schema.all()}
        self._cursors = dict.fromkeys(self.partition_of, _ZERO)
        # Raw replies: redis-py's parser drops the ids of deleted entries (6.2) or the list of
        # deleted ids (7.x).
        redis.set_response_callback("XAUTOCLAIM", lambda response, **_: response)
        # XREADGROUP raw too: entries keep Redis' flat field list; parse reads it positionally.
        redis.set_response_callback("XREADGROUP", lambda response, **_: response)

    async def ensure_groups(self) -> None:
        """Creates the group on every stream (from its first entry), once; safe to repeat."""
        for stream in self.partition_of:
            try:
                await self.redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_own(self) -> list[Entry]:
        return await self._read("0")

    async def read_new(self) -> list[Entry]:
        return await self._read(">", "BLOCK", self.block_ms)

    async def _read(self, after: str, *block: Any) -> list[Entry]:
        if self.cluster:
            return await self._read_each(after, bool(block))
        return await self._read_streams_of(list(self.partition_of), after, *block)

    async def _read_each(self, after: str, block: bool) -> list[Entry]:
        """One XREADGROUP per partition stream, all at once; if none has entries and the
        caller may wait, the same with a short BLOCK."""
        entries = await self._read_streams(after)
        if entries or not block:
            return entries
        return await self._read_streams(after, "BLOCK", min(self.block_ms, _CLUSTER_BLOCK_MS))

    async def _read_streams(self, after: str, *block: Any) -> list[Entry]:
        replies = await asyncio.gather(
            *(self._read_streams_of([stream], after, *block) for stream in self.partition_of)
        )
        return [entry for entries in replies for entry in entries]

    async def _read_streams_of(self, streams: list[bytes], after: str, *block: Any) -> list[Entry]:
        """One XREADGROUP with the run_id of the server answering it: both in one pipeline, so
        on one connection to one node (on a cluster, `streams` is a single stream)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.execute_command("EVAL", _RUN_ID, 1, streams[0])
            pipe.execute_command(
                "XREADGROUP",
                "GROUP",
                CONSUMER_GROUP,
                self.consumer,
                "COUNT",
                self.batch,
                *block,
                "STREAMS",
                *streams,
                *[after] * len(streams),
            )
            run, reply = await pipe.execute()
        return self._entries(reply, _text(run))

    async def claim(self) -> tuple[int, list[Entry]]:
        """Takes over idle entries of other consumers; returns how many, and the deleted ones.

        Scans each pending list a bounded number of steps per call; the cursor carries on."""
        claimed, deleted = 0, []
        for stream, partition in self.partition_of.items():
            for _ in range(_CLAIM_STEPS):
                reply: list[Any] = await self.redis.execute_command(
                    "XAUTOCLAIM",
                    stream,
                    CONSUMER_GROUP,
                    self.consumer,
                    self.claim_idle_ms,
                    self._cursors[stream],
                    "COUNT",
                    self.batch,
                    "JUSTID",
                )
                self._cursors[stream] = reply[0]
                claimed += len(reply[1])
                # Redis 7 drops entries deleted from the stream from the pending list itself.
                gone = reply[2] if len(reply) > 2 else []
                deleted += [Entry(partition, _text(i), []) for i in gone]
                if _bytes(reply[0]) == _ZERO:
                    break
        if claimed:
            log.info("claimed %d entries left pending by other consumers", claimed)
        return claimed, deleted

    async def ack(self, entries: list[Entry]) -> None:
        by_stream: dict[bytes, list[str]] = {}
        stream_of = {n: s for s, n in self.partition_of.items()}
        for entry in entries:
            by_stream.setdefault(stream_of[entry.partition], []).append(entry.stream_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, CONSUMER_GROUP, *ids)
            await pipe.execute()

    async def trim(self) -> int:
        removed = 0
        for stream in self.partition_of:
            bound = await self._trim_bound(stream)
            if bound is not None:
                removed += await self.redis.xtrim(stream, minid=bound, approximate=False)
        return removed

    async def _trim_bound(self, stream: bytes) -> bytes | None:
        """The lowest id any group still needs: its oldest pending entry, else its last-delivered
        id. Read in one MULTI so no entry can be delivered between the two reads unprotected."""
        try:
            names = [g["name"] for g in await self.redis.xinfo_groups(stream)]
        except ResponseError:
            return None  # no stream
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_groups(stream)
            for name in names:
                pipe.xpending(stream, name)
            groups, *pendings = await pipe.execute()
        if [g["name"] for g in groups] != names:
            return None  # a group came or went meanwhile: trim next time
        bounds = []
        for group, pending in zip(groups, pendings, strict=True):
            bounds.append(pending["min"] if pending["pending"] else group["last-delivered-id"])
        bound = min(bounds, key=parse_stream_id, default=None)
        return None if bound is None or parse_stream_id(bound) == (0, 0) else _bytes(bound)

    def _entries(self, reply: Any, run: str) -> list[Entry]:
        entries = []
        for stream, items in reply.items() if isinstance(reply, dict) else reply or []:
            partition = self.partition_of[_bytes(stream)]
            # fields None: deleted from the stream
            entries += [
                Entry(partition, _text(stream_id), fields or [], run) for stream_id, fields in items
            ]
        return entries


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
