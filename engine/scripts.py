"""Finds the Lua scripts (source tree or installed wheel), resolves their includes, and registers
them with a Redis client so they run by SHA and reload themselves after NOSCRIPT.

On a cluster every primary gets every script at start, and a NOSCRIPT reloads the script on the
node that answered it (engine.connection.ClusterClient), inside pipelines too.

A script (below its header) or an include names each include it calls, one line each:

    --- @include "sku_state"

which stands for `includes/sku_state.lua`. Redis takes one chunk per script, so the loader sends
the includes first, each once, every include after the ones it names itself, then the script.
The directive lines stay in the text (they are Lua comments).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import ResponseError

from engine.connection import ClusterClient, RedisClient
from engine.errors import ConfigurationError
from engine.fencing import adopt, recovering_error
from engine.keys import Partition
from engine.replication import ReplicaAck, evalsha_acked, execute_acked

SCRIPTS = (
    "configure_sku",
    "reserve",
    "extend",
    "commit",
    "fulfil",
    "release",
    "expire",
    "change_on_hand",
    "snapshot",
    "get_reservation",
    "restore_sku",
    "cart",
    "fence",
)

# Scripts that never write (`fence` writes only its own marker, which a new server ignores
# anyway): no WAIT behind them in zero-loss mode.
READ_ONLY = frozenset({"snapshot", "get_reservation", "fence"})

_INCLUDE = re.compile(r"""^---[ \t]*@include[ \t]+(["'])([\w-]+)\1[ \t]*$""", re.MULTILINE)


class IncludeError(ConfigurationError):
    """A Lua script names an include that does not exist, or includes form a cycle."""


def lua_dir() -> Path:
    """`engine/lua` inside an installed wheel, else the repository's top-level `lua/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "reserve.lua").is_file():
            return candidate
    raise FileNotFoundError(f"no Lua scripts next to {here}")


def includes_of(source: str) -> list[str]:
    """The include names a Lua text declares, in the order written."""
    return [match.group(2) for match in _INCLUDE.finditer(source)]


@cache
def load_script_source(name: str, base: Path | None = None) -> str:
    """The full text sent to Redis: every include the script needs, then the script itself."""
    base = base or lua_dir()
    return with_includes((base / f"{name}.lua").read_text(), name, base)


def with_includes(source: str, name: str, base: Path | None = None) -> str:
    """`source` (a script's text, `name` for messages) after every include it names."""
    base = base or lua_dir()
    ordered: list[str] = []  # include texts, each after the includes it names
    done: set[str] = set()

    def visit(include: str, chain: tuple[str, ...]) -> None:
        if include in chain:
            cycle = " -> ".join((*chain[chain.index(include) :], include))
            raise IncludeError(f"{name}.lua: include cycle {cycle}")
        if include in done:
            return
        path = base / "includes" / f"{include}.lua"
        if not path.is_file():
            by = chain[-1] if chain else name
            raise IncludeError(f"{by}.lua includes {include!r}, but {path} does not exist")
        text = path.read_text()
        for inner in includes_of(text):
            visit(inner, (*chain, include))
        done.add(include)
        ordered.append(text)

    for include in includes_of(source):
        visit(include, ())
    return "\n".join((*ordered, source))


class ScriptCall(Protocol):
    """What the engine calls: redis-py's AsyncScript on one node, ClusterScript on a cluster."""

    script: Any
    sha: str

    def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any | None = None,
    ) -> Awaitable[Any]: ...


class ClusterScript:
    """A script on a cluster, called like redis-py's AsyncScript: by SHA on the node owning its
    keys' slot (every key of one call carries the same `{p<N>}` tag)."""

    def __init__(self, redis: ClusterClient, source: str) -> None:
        self.redis = redis
        self.script = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        redis.script_sources[self.sha] = source.encode()

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any | None = None,
    ) -> Any:
        keys, args = list(keys or []), list(args or [])
        if isinstance(client, ClusterPipeline):  # queued; the pipeline recovers NOSCRIPT
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        return await self.redis.evalsha_recovering(self.sha, keys, args)


class Guarded:
    """A script whose `PARTITION_RECOVERING` error reply (an unverified partition, see
    engine.fencing) is raised as PartitionRecovering. With `adopt`, an engine that has no
    durable side to compare with marks such a partition verified and runs the call again.
    With `acked` (zero-loss mode, a script that writes), each call is followed by a WAIT on its
    connection (engine.replication)."""

    def __init__(
        self, inner: ScriptCall, fence: ScriptCall | None, acked: Acked | None = None
    ) -> None:
        self._inner = inner
        self._fence = fence  # set: adopt an unverified partition
        self._acked = acked
        self.script = inner.script

    @property
    def sha(self) -> str:
        return self._inner.sha

    @sha.setter
    def sha(self, value: str) -> None:
        self._inner.sha = value

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any | None = None,
    ) -> Any:
        if client is not None:  # queued in a pipeline: its caller reads the error in the results
            return await self._inner(keys=keys, args=args, client=client)
        for attempt in range(2):
            try:
                if self._acked is not None:
                    return await self._acked.evalsha(self.sha, list(keys or []), list(args or []))
                return await self._inner(keys=keys, args=args)
            except ResponseError as exc:
                refusal = recovering_error(exc)
                if refusal is None:
                    raise
                if self._fence is None or refusal.fenced or attempt:
                    raise refusal from None
                await adopt(self._fence, Partition(refusal.partition))
        raise AssertionError("unreachable")


class Acked:
    """Script calls followed by a WAIT for `ack.replicas` replicas (engine.replication)."""

    def __init__(self, redis: RedisClient, ack: ReplicaAck) -> None:
        self.redis = redis
        self.ack = ack
        self.sources: dict[str, str] = {}  # sha -> source, to reload after NOSCRIPT

    async def evalsha(self, sha: str, keys: list[Any], args: list[Any]) -> Any:
        return await evalsha_acked(self.redis, sha, keys, args, self.ack, self.sources)

    async def execute(self, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Several script calls on `key`'s partition, then one WAIT (replies or errors)."""
        return await execute_acked(self.redis, key, commands, self.ack, self.sources)


class Scripts:
    """One registered script per operation, bound to a client.

    `adopt_unverified`: the engine runs without a durable side (no fencing to wait for).
    `ack`: zero-loss mode; every script that writes waits for that many replicas (`acked`)."""

    def __init__(
        self,
        redis: RedisClient,
        base: Path | None = None,
        *,
        adopt_unverified: bool = False,
        ack: ReplicaAck | None = None,
    ) -> None:
        raw = {name: _register(redis, load_script_source(name, base)) for name in SCRIPTS}
        fence = raw["fence"] if adopt_unverified else None
        self.acked = Acked(redis, ack) if ack is not None else None
        if self.acked is not None:
            self.acked.sources.update((script.sha, script.script) for script in raw.values())
        self._scripts: dict[str, ScriptCall] = {
            name: Guarded(script, fence, None if name in READ_ONLY else self.acked)
            for name, script in raw.items()
        }

    def __getitem__(self, name: str) -> ScriptCall:
        return self._scripts[name]

    async def load_all(self, redis: RedisClient) -> None:
        """Loads every script now (on a cluster: on every primary), so a syntax error shows at
        start-up, not at the first sale."""
        for script in self._scripts.values():
            script.sha = await redis.script_load(script.script)


def _register(redis: RedisClient, source: str) -> ScriptCall:
    if isinstance(redis, ClusterClient):
        return ClusterScript(redis, source)
    if not isinstance(redis, Redis):
        raise ConfigurationError("a cluster needs engine.connection's client (connect())")
    return redis.register_script(source)
