"""Fencing: a partition sells only on a Redis server known to be at least as new as Postgres.

Every event a script appends gets the partition stream's next entry id, in the same script as the
change: that id is the partition's sequence. Postgres keeps the newest it has synced per
partition. A Redis server that restarted (from any file) or a replica that was promoted may have
lost the newest changes, and Postgres may hold events this server never made: it is *behind*
when Postgres' newest id for a partition is above the stream's last generated id. Once writes
resume on such a server, its ids move past the lost range and the loss can no longer be seen, so
the check has to come first:

- `{p<N>}:verified` names the run_id of the server process the partition was verified on. Every
  script that writes compares it with its own server's run_id before its first write
  (`lua/includes/fence.lua`) and refuses with :class:`PartitionRecovering` when they differ.
  A restart or a promotion is a new process, a new run_id: no write slips in before the check.
- The sync worker (it has Postgres) compares the two sequences and either marks the partition
  verified on the new server (`verify`) or fences it (`fence`); `flashsale restore --partition N`
  rebuilds a fenced partition and marks it verified (`adopt`).
- An engine configured without a durable side (`fencing = False`) has nothing to compare with: it
  adopts a partition it finds unverified and carries on.

Reads (`snapshot`, `get_reservation`) still answer on an unverified partition; `snapshot` then
reclaims nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from redis.exceptions import ResponseError

from engine.errors import PartitionRecovering
from engine.keys import KeySchema, Partition
from engine.streams import parse_stream_id

if TYPE_CHECKING:
    from engine.scripts import ScriptCall

RECOVERING = "PARTITION_RECOVERING"
PartitionState = Literal["verified", "new", "recovering", "fenced"]


def recovering_error(exc: BaseException) -> PartitionRecovering | None:
    """The refusal a script's `PARTITION_RECOVERING <n> recovering|fenced` error reply stands
    for; None for any other error."""
    if not isinstance(exc, ResponseError):
        return None
    words = str(exc).split()
    if len(words) != 3 or words[0] != RECOVERING or not words[1].isdigit():
        return None
    return PartitionRecovering(partition=int(words[1]), fenced=words[2] == "fenced")


@dataclass(frozen=True, slots=True)
class FenceStatus:
    """One partition as its Redis server sees it."""

    partition: int
    run: str  # the server's run_id
    marker: str  # the run_id the partition was verified on ("" none, "fenced" fenced)
    fenced: dict[str, Any] | None  # why it is fenced, when it is
    last: tuple[int, int]  # the stream's last generated id (the partition's sequence)
    changed: bool  # the operation did what it was asked

    @property
    def verified(self) -> bool:
        return self.marker == self.run

    @property
    def new(self) -> bool:
        """No marker and a stream that never had an entry: the first write claims it."""
        return self.marker == "" and self.last == (0, 0)

    @property
    def state(self) -> PartitionState:
        """ "verified", "new" (it sells: its first write claims it), "fenced", or "recovering"
        (waiting for the worker's comparison)."""
        if self.verified:
            return "verified"
        if self.new:
            return "new"
        return "fenced" if self.fenced is not None else "recovering"


def stream_id_text(pos: tuple[int, int]) -> str:
    return f"{pos[0]}-{pos[1]}"


def fence_call(part: Partition, op: str, *args: Any) -> tuple[list[Any], list[Any]]:
    """KEYS and ARGV of `fence.lua` (its header is the contract)."""
    return [part.verified, part.fenced, part.events], [op, *args]


def _status(partition: int, raw: bytes | str) -> FenceStatus:
    reply = orjson.loads(raw)
    fenced = reply["fenced"]
    return FenceStatus(
        partition=partition,
        run=reply["run"],
        marker=reply["marker"],
        fenced=orjson.loads(fenced) if fenced else None,
        last=parse_stream_id(reply["last"]),
        changed=reply["ok"] == 1,
    )


async def fence_status(script: ScriptCall, part: Partition) -> FenceStatus:
    keys, args = fence_call(part, "status")
    return _status(part.number, await script(keys=keys, args=args))


async def statuses(script: ScriptCall, schema: KeySchema) -> Sequence[FenceStatus]:
    """Every partition's status, asked concurrently (on a cluster, of each owning node)."""
    first, *rest = schema.all()
    # The first alone: concurrent first calls on a cluster client that has not connected yet
    # race each other in redis-py (one finds the other's connection half open).
    done = [await fence_status(script, first)]
    return done + list(await asyncio.gather(*(fence_status(script, part) for part in rest)))


async def verify(
    script: ScriptCall, part: Partition, run: str, postgres_newest: tuple[int, int]
) -> FenceStatus:
    """Marks the partition verified on server `run`, if that is still the server and its stream
    has reached `postgres_newest`."""
    keys, args = fence_call(part, "verify", run, stream_id_text(postgres_newest))
    return _status(part.number, await script(keys=keys, args=args))


async def fence(
    script: ScriptCall, part: Partition, run: str, reason: dict[str, Any]
) -> FenceStatus:
    """Fences the partition on server `run` (if that is still the server)."""
    keys, args = fence_call(part, "fence", run, orjson.dumps(reason))
    return _status(part.number, await script(keys=keys, args=args))


async def adopt(script: ScriptCall, part: Partition) -> FenceStatus:
    """Marks the partition verified on whatever server answers, with whatever it holds."""
    keys, args = fence_call(part, "adopt")
    return _status(part.number, await script(keys=keys, args=args))
