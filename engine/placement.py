"""Which partition a SKU lives in: its own, or its placement group's.

A SKU may name a placement group (its sale or drop). Its keys then carry the partition of the
group, crc32(group) % partitions, instead of crc32(sku) % partitions: every SKU of one sale
shares a partition, so a cart within one sale is one atomic script even on a cluster.

The group is read from the directory key `placement:<sku>` (engine.keys.placement). It is
written once, with SET NX, before the SKU's first configuration, and never changes: so a process
caches what it read for as long as it runs, and the SET NX decides between two first
configurations racing with different groups. A missing entry is not cached (the SKU may be
created a moment later). A SKU created before placement groups existed has no entry and no
group; the first lookup that finds it in its own partition writes its entry from its config.
`flashsale restore` writes the directory again from Postgres.

A first configuration the script refuses (a malformed config) still leaves its group claimed:
the claim cannot be taken back safely, since another process may be creating the same SKU in
the same group at that moment.

With one partition every SKU lives in partition 0, and routing reads no directory at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from engine.connection import RedisClient
from engine.errors import EngineError, PlacementGroupFixed
from engine.keys import KeySchema, Partition, placement

# SKU -> group entries kept per process; past it the oldest go (and are read again if needed).
_CACHE_SIZE = 1_000_000


class Placements:
    """The SKU -> partition map of one engine, with the groups it has read."""

    def __init__(self, redis: RedisClient, keys: KeySchema) -> None:
        self._redis = redis
        self._keys = keys
        self._groups: dict[str, str] = {}  # SKU -> its group, "" for none: never stale

    async def partition(self, sku: str) -> Partition:
        """The partition holding the SKU's keys (its own for a SKU that does not exist yet)."""
        if self._keys.partitions == 1:
            return self._keys.partition(0)
        group = self._groups.get(sku)
        if group is None:
            group = await self.group(sku)
        if group is None:
            group = await self._adopt(sku)
        return self._keys.placed(sku, group)

    async def partitions(self, skus: Sequence[str]) -> list[Partition]:
        """`partition` of each SKU, the directory entries not cached yet read concurrently."""
        return list(await asyncio.gather(*(self.partition(sku) for sku in skus)))

    async def group(self, sku: str) -> str | None:
        """The SKU's group ("" for none), or None while the directory has no entry for it."""
        known = self._groups.get(sku)
        if known is not None:
            return known
        raw = await self._redis.get(placement(sku))
        if raw is None:
            return None
        group = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._remember(sku, group)
        return group

    async def claim(self, sku: str, requested: str | None) -> Partition:
        """The SKU's partition for configure_sku: fixes its group if it has none yet.

        Raises PlacementGroupFixed when the SKU has another group (or none) than `requested`.
        """
        wanted = requested or ""
        current = await self.group(sku)
        if current is None:
            current = await self._adopt(sku)  # made before placement groups: it keeps none
        if current is None:
            if await self._redis.set(placement(sku), wanted, nx=True):
                self._remember(sku, wanted)
                current = wanted
            else:  # a first configuration racing us claimed it first
                current = await self.group(sku)
                if current is None:  # and the entry is gone again: Redis was flushed under us
                    raise EngineError(f"the placement of SKU {sku} changed while read: retry")
        if current != wanted:
            raise PlacementGroupFixed(
                sku=sku, placement_group=current or None, requested=wanted or None
            )
        return self._keys.placed(sku, current)

    async def _adopt(self, sku: str) -> str | None:
        """Writes the entry of a SKU that exists without one (made before placement groups),
        from its own config, so that later lookups are answered from the cache. None while no
        such SKU exists: it may yet be created, in any group."""
        raw = await self._redis.hget(self._keys.for_sku(sku).sku(sku), "cfg")
        if raw is None:
            return None
        group = orjson.loads(raw).get("placement_group") or ""
        await self._redis.set(placement(sku), group, nx=True)  # a racing claim keeps its own
        return await self.group(sku)

    def _remember(self, sku: str, group: str) -> None:
        if len(self._groups) >= _CACHE_SIZE:
            del self._groups[next(iter(self._groups))]
        self._groups[sku] = group
