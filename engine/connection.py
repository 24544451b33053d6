"""The one place that builds Redis clients: a single node, or a Redis Cluster named by any node.

    connect(settings)                 the engine's client (pooled; bursts wait for a connection)
    connect_url(url, cluster, **kw)   a client for tools (worker, reconcile, restore) on one URL
    is_cluster(redis)                 which of the two a client is

On a cluster every command goes to the primary owning its key's slot. Every key of one partition
carries the partition's hash tag `{p<N>}`, so one script call, one MULTI and one pipeline per
partition stay on one slot; a pipeline spanning partitions is split per node by redis-py.

`ClusterClient` adds two things redis-py's `RedisCluster` lacks:
- its pipelines recover from NOSCRIPT node by node (a promoted replica, or a node restarted or
  flushed, has an empty script cache; scripts are never replicated);
- past `max_connections` per node a command waits for a free connection instead of failing,
  as the single node's blocking pool does, so a burst of buyers queues rather than erroring.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, PipelineCommand, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.config import EngineSettings
from engine.errors import ConfigurationError

RedisClient: TypeAlias = Redis | RedisCluster  # noqa: UP040 - mypy reads it as a plain alias

_NOSCRIPT_ATTEMPTS = 3  # a slot can move while we reload: try a few nodes, not forever


def connect(settings: EngineSettings) -> RedisClient:
    if settings.redis_url is None:
        raise ConfigurationError("settings.redis_url is not set (start the services first)")
    if settings.redis_cluster:
        return ClusterClient.from_url(
            settings.redis_url, max_connections=settings.redis_max_connections
        )
    # A blocking pool: past max_connections a request waits for a connection instead of
    # failing, so a burst of buyers queues rather than being refused.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_max_connections, timeout=10
    )
    return Redis(connection_pool=pool)


def connect_url(url: str, *, cluster: bool = False, **options: Any) -> RedisClient:
    if cluster:
        return ClusterClient.from_url(url, **options)
    return Redis.from_url(url, **options)


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster | ClusterPipeline)


class ClusterClient(RedisCluster):
    """RedisCluster with NOSCRIPT recovery in pipelines and waiting for a free connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A command or a pipeline holds at most one connection per node at a time: half the
        # pool for each kind never exhausts a node's pool, and a pipeline that retries a
        # command on its own (a redirection) takes from the other half, so none waits on itself.
        per_kind = max(1, kwargs.get("max_connections", 100) // 2)
        self._commands = asyncio.Semaphore(per_kind)
        self._pipelines = asyncio.Semaphore(per_kind)
        self.script_sources: dict[str, bytes] = {}  # sha -> source, filled by engine.scripts

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._commands, _closed_under_us():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise ValueError("a cluster pipeline takes no shard_hint")
        return _ScriptPipeline(self, transaction)  # type: ignore[abstract]

    async def evalsha_recovering(self, sha: str, keys: list[Any], args: list[Any]) -> Any:
        """EVALSHA on the node owning the keys' slot; after NOSCRIPT, load it there and retry."""
        for attempt in range(_NOSCRIPT_ATTEMPTS):
            try:
                return await self.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:
                if attempt == _NOSCRIPT_ATTEMPTS - 1:
                    raise
                await self.load_script_on_node(sha, keys[0])
        raise AssertionError("unreachable")

    async def on_slot_node(self, key: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Runs `commands` in order on one connection of the primary owning `key`'s slot, and
        returns each reply or error. Unlike a cluster pipeline, a keyless command among them (a
        WAIT) goes to that same node. After a redirection, a cluster still electing a primary or
        a broken connection, the topology is read again and all of them run again: every command
        given here is a script call that answers a repeat from its idempotency record, or a
        WAIT."""
        attempts = self.retry.get_retries() + 1
        last_failed: str | None = None  # a node that did not answer: not the next default
        for attempt in range(attempts):
            node: ClusterNode | None = None
            try:
                if self._initialize:
                    await self.initialize(last_failed_node_name=last_failed)
                node = self.get_node_from_key(key)
                if node is None:
                    raise SlotNotCoveredError(f"no primary serves the slot of {key!r}")
                queued = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
                async with self._pipelines, _closed_under_us():
                    await node.execute_pipeline(queued)
                for c in queued:
                    c.result = _as_outage(c.result)
                failure = next((c.result for c in queued if _is_topology(c.result)), None)
            except (RedisConnectionError, RedisTimeoutError, SlotNotCoveredError) as exc:
                failure = exc
            if failure is None:
                return [c.result for c in queued]
            if attempt == attempts - 1:
                raise failure
            if node is not None and isinstance(failure, RedisConnectionError | RedisTimeoutError):
                last_failed = node.name
            await self._after(failure, node)
        raise AssertionError("unreachable")

    async def _after(self, failure: BaseException, node: ClusterNode | None) -> None:
        """What redis-py's own command path does after `failure`, before trying again."""
        if isinstance(failure, MovedError):
            await self.nodes_manager.move_slot(failure)
        elif isinstance(failure, RedisConnectionError | RedisTimeoutError):
            if node is not None:
                node.update_active_connections_for_reconnect()
                await node.disconnect_free_connections()
            self._initialize = True
            await asyncio.sleep(0.25)
        elif isinstance(failure, ClusterDownError | SlotNotCoveredError):
            self._initialize = True
            await asyncio.sleep(0.25)
        else:  # ASK or TRYAGAIN: the slot is migrating; it settles within moments
            await asyncio.sleep(0.05)

    async def load_script_on_node(self, sha: str, key: Any) -> None:
        source = self.script_sources.get(sha)
        if source is None:
            raise NoScriptError(f"script {sha} was never registered with this client")
        node = self.get_node_from_key(key)
        await self.execute_command("SCRIPT LOAD", source, target_nodes=node)


class _ScriptPipeline(ClusterPipeline):
    """A cluster pipeline whose EVALSHA commands that met an empty script cache are run again,
    one by one, after their script was loaded on that node."""

    def __init__(self, client: ClusterClient, transaction: Any | None = None) -> None:
        super().__init__(client, transaction)
        self._client = client
        self._queued: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self._queued.append(args)
        return super().execute_command(*args, **kwargs)

    async def reset(self) -> None:  # type: ignore[override]
        self._queued = []
        await super().reset()

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        queued = self._queued
        async with self._client._pipelines, _closed_under_us():
            results: list[Any] = await super().execute(False, allow_redirections)
        results = [_as_outage(result) for result in results]
        for i, result in enumerate(results):
            if isinstance(result, NoScriptError) and queued[i][0] == "EVALSHA":
                _, sha, count, *rest = queued[i]
                keys, args = rest[: int(count)], rest[int(count) :]
                try:
                    results[i] = await self._client.evalsha_recovering(sha, keys, args)
                except Exception as exc:  # reported like any failed command of the pipeline
                    results[i] = exc
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results


@asynccontextmanager
async def _closed_under_us() -> AsyncIterator[None]:
    """redis-py's cluster client, on a CLUSTERDOWN (a failover under way), closes every
    connection of every node, those other tasks are using included: their next write then
    fails with AttributeError (no stream writer). It is the outage, and is raised as one."""
    try:
        yield
    except AttributeError as exc:
        raise _as_outage(exc) from exc


def _as_outage(result: Any) -> Any:
    """A pipeline's reply, with such an AttributeError turned into the ConnectionError it is."""
    if isinstance(result, AttributeError):
        return RedisConnectionError(f"connection closed while in use ({result})")
    return result


def _is_topology(result: Any) -> bool:
    """A reply saying the command reached the wrong node, or no node: try it again elsewhere."""
    return isinstance(
        result,
        MovedError
        | AskError
        | TryAgainError
        | ClusterDownError
        | SlotNotCoveredError
        | RedisConnectionError
        | RedisTimeoutError,
    )
