"""Zero-loss mode: a write is answered only once `redis_min_replicas_ack` replicas have it.

Redis replicates asynchronously: a primary that dies right after answering takes along what it
had not sent yet, and the replica promoted in its place never saw it. `WAIT n t`, sent on the
connection that made the write, blocks until n replicas confirmed every write of that
connection (or t ms passed) and answers how many did. So every script call that writes travels
with a WAIT behind it on the same connection, in the same round trip (one pipeline): one WAIT per
call, and a batch of reserves is one call.

On a cluster WAIT names no key, and redis-py would send it to any node: both go to the node
owning the call's slot instead (engine.connection.ClusterClient.on_slot_node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from engine.config import EngineSettings
from engine.connection import ClusterClient, RedisClient
from engine.errors import NotReplicated
from engine.keys import partition_of_key

Command = tuple[Any, ...]

_NOSCRIPT_ROUNDS = 3  # a slot can move while we reload: try a few times, not forever


@dataclass(frozen=True, slots=True)
class ReplicaAck:
    """How many replicas must confirm a write, and how long to wait for them."""

    replicas: int
    timeout_ms: int

    @classmethod
    def of(cls, settings: EngineSettings) -> ReplicaAck | None:
        """None when the mode is off."""
        if settings.redis_min_replicas_ack == 0:
            return None
        return cls(settings.redis_min_replicas_ack, settings.redis_replicas_ack_timeout_ms)


async def execute_acked(
    redis: RedisClient,
    key: str,
    commands: Sequence[Command],
    ack: ReplicaAck,
    sources: Mapping[str, str | bytes],
) -> list[Any]:
    """Runs `commands` (all on `key`'s slot) and then WAIT, on one connection. An EVALSHA that met
    an empty script cache (a restarted or promoted server) is run again once its script is loaded,
    with a WAIT of its own. Returns each command's reply or error, in order; raises NotReplicated
    when fewer replicas than required confirmed and any command wrote (answered without error)."""
    results: list[Any] = [None] * len(commands)
    todo = list(range(len(commands)))
    confirmed = ack.replicas
    for round_ in range(_NOSCRIPT_ROUNDS):
        *replies, waited = await _send(redis, key, [commands[i] for i in todo], ack)
        if isinstance(waited, Exception):
            raise waited
        confirmed = min(confirmed, int(waited))
        for i, reply in zip(todo, replies, strict=True):
            results[i] = reply
        todo = [i for i in todo if isinstance(results[i], NoScriptError)]
        if not todo or round_ == _NOSCRIPT_ROUNDS - 1:
            break
        for sha in {commands[i][1] for i in todo}:
            await _load(redis, key, sha, sources)
    wrote = any(not isinstance(result, Exception) for result in results)
    if wrote and confirmed < ack.replicas:
        raise NotReplicated(
            partition=partition_of_key(key), replicas=confirmed, required=ack.replicas
        )
    return results


async def evalsha_acked(
    redis: RedisClient,
    sha: str,
    keys: Sequence[Any],
    args: Sequence[Any],
    ack: ReplicaAck,
    sources: Mapping[str, str | bytes],
) -> Any:
    """One script call and its WAIT; the script's error reply is raised as redis-py would."""
    command = ("EVALSHA", sha, len(keys), *keys, *args)
    (reply,) = await execute_acked(redis, str(keys[0]), [command], ack, sources)
    if isinstance(reply, Exception):
        raise reply
    return reply


async def _send(
    redis: RedisClient, key: str, commands: Sequence[Command], ack: ReplicaAck
) -> list[Any]:
    wait: Command = ("WAIT", ack.replicas, ack.timeout_ms)
    if isinstance(redis, ClusterClient):
        return await redis.on_slot_node(key, [*commands, wait])
    async with redis.pipeline(transaction=False) as pipe:  # one connection, one round trip
        for command in (*commands, wait):
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies


async def _load(redis: RedisClient, key: str, sha: str, sources: Mapping[str, str | bytes]) -> None:
    if isinstance(redis, ClusterClient):
        await redis.load_script_on_node(sha, key)
        return
    source = sources.get(sha)
    if source is None:
        raise NoScriptError(f"script {sha} was never registered with this client")
    await redis.script_load(source)
