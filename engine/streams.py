"""The sync worker's backlog per partition stream, read from Redis alone.

The API's /readyz and /metrics and `flashsale worker status` call :func:`partition_lag`; it needs
no Postgres, because the consumer group's pending list and last-delivered id say what is unsynced:

    pending          entries delivered to a worker and not yet acknowledged (not yet committed)
    undelivered      entries after the group's last-delivered id (no worker has read them)
    oldest unsynced  the oldest pending entry, else the first undelivered one, else none

Works on Redis 6.2 (no `lag` field in XINFO GROUPS: the first undelivered entry is read instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from engine.connection import RedisClient
from engine.keys import KeySchema, Partition

CONSUMER_GROUP = "sync"


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    length: int  # entries in the stream (synced entries stay until the worker trims them)
    pending: int  # delivered to a worker, not yet acknowledged
    oldest_unsynced_age_ms: int  # 0 when everything is synced
    undelivered: int | None = None  # known on Redis >= 7 only (XINFO GROUPS `lag`)
    group_exists: bool = True

    @property
    def synced(self) -> bool:
        return self.oldest_unsynced_age_ms == 0 and self.pending == 0


def stream_id_ms(stream_id: str | bytes) -> int:
    """The millisecond part of a stream id: when Redis appended the entry."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return int(text.split("-", 1)[0])


def parse_stream_id(stream_id: str | bytes) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def partition_lag(redis: RedisClient, schema: KeySchema) -> list[PartitionLag]:
    return [await _one(redis, part) for part in schema.all()]


async def _one(redis: RedisClient, part: Partition) -> PartitionLag:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(part.events)
        pipe.xinfo_groups(part.events)
        pipe.xpending(part.events, CONSUMER_GROUP)
        pipe.xrange(part.events, "-", "+", count=1)
        pipe.xrevrange(part.events, "+", "-", count=1)
        if isinstance(redis, RedisCluster):  # a keyless command: not in a cluster pipeline
            length, groups, pending, first, last = await pipe.execute(raise_on_error=False)
            node = redis.get_node_from_key(part.events)  # the clock of the stream's own node
            now = await redis.execute_command("TIME", target_nodes=node)
        else:
            pipe.time()
            length, groups, pending, first, last, now = await pipe.execute(raise_on_error=False)
    if isinstance(length, Exception):
        raise length
    if isinstance(now, Exception):
        raise now
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    group = _find_group(groups)
    if group is None or isinstance(pending, ResponseError):
        # No worker ever ran: everything in the stream is unsynced.
        age = now_ms - stream_id_ms(first[0][0]) if first else 0
        return PartitionLag(part.number, int(length), 0, max(age, 0), int(length), False)
    pending_count = int(pending["pending"])
    lag = group.get("lag")
    undelivered = None if lag is None else int(lag)
    oldest: str | bytes | None = None
    if pending_count:
        oldest = pending["min"]
    elif last and parse_stream_id(last[0][0]) > parse_stream_id(group["last-delivered-id"]):
        after = await redis.xrange(part.events, b"(" + _bytes(group["last-delivered-id"]), count=1)
        oldest = after[0][0] if after else None
    age = max(now_ms - stream_id_ms(oldest), 1) if oldest is not None else 0
    return PartitionLag(part.number, int(length), pending_count, age, undelivered)


def _find_group(groups: Any) -> dict[str, Any] | None:
    if isinstance(groups, Exception):
        return None  # no stream yet
    for group in groups:
        name = group["name"]
        if (name.decode() if isinstance(name, bytes) else name) == CONSUMER_GROUP:
            return dict(group)
    return None


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
