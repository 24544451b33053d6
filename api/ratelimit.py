"""Fixed-window rate limits kept in Redis, so every API worker and host counts together.

Counting is batched as reserves are (engine.batching): the first hit on an idle limiter goes out
at once; hits arriving while it is out leave together in the next round trip. A round trip is one
MULTI with INCR and PEXPIRE per hit, so a counter never lives without its expiry even if the
process dies between the two commands, and two hits on one counter get consecutive counts. On a
cluster a MULTI holds one slot's keys only: a batch goes out as one MULTI per slot, concurrently.
"""

from __future__ import annotations

import asyncio
import math
import time

from api.problems import ApiProblem
from engine.batching import Batcher
from engine.connection import RedisClient, is_cluster
from engine.keys import rate_limit

_EXPIRY_SLACK_MS = 1_000  # the counter outlives its window a little: clocks of API hosts differ
# Two round trips out at once, as the reserve lanes: one is applied while the next one fills.
_IN_FLIGHT = 2
_BATCH_MAX = 1_000

Hit = tuple[str, int]  # counter key, its expiry in ms from now


class RateLimiter:
    def __init__(self, redis: RedisClient, window_seconds: int) -> None:
        self.redis = redis
        self.window_ms = window_seconds * 1000
        self._counts: Batcher[Hit, int] = Batcher(self._count, _BATCH_MAX, _IN_FLIGHT)

    async def hit(self, scope: str, subject: str, limit: int) -> None:
        """Counts one request; raises a 429 problem past `limit` per window (0 = no limit)."""
        if limit <= 0:
            return
        now_ms = int(time.time() * 1000)
        window = now_ms // self.window_ms
        left_ms = (window + 1) * self.window_ms - now_ms
        count = await self._counts.submit(
            (rate_limit(scope, subject, window), left_ms + _EXPIRY_SLACK_MS)
        )
        if count > limit:
            retry_after = max(1, math.ceil(left_ms / 1000))
            raise ApiProblem(
                429,
                "rate_limited",
                f"more than {limit} requests per {self.window_ms // 1000} s for this {scope}",
                headers={"Retry-After": str(retry_after)},
                limit=limit,
                retry_after=retry_after,
            )

    async def _count(self, hits: list[Hit]) -> list[int]:
        if not is_cluster(self.redis):
            return await self._multi(hits)
        by_slot: dict[int, list[int]] = {}
        for n, (key, _) in enumerate(hits):
            by_slot.setdefault(self.redis.keyslot(key), []).append(n)  # type: ignore[union-attr]
        groups = list(by_slot.values())
        replies = await asyncio.gather(*(self._multi([hits[n] for n in g]) for g in groups))
        counts = [0] * len(hits)
        for group, reply in zip(groups, replies, strict=True):
            for n, count in zip(group, reply, strict=True):
                counts[n] = count
        return counts

    async def _multi(self, hits: list[Hit]) -> list[int]:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, expiry_ms in hits:
                pipe.incr(key)
                pipe.pexpire(key, expiry_ms)
            replies = await pipe.execute()
        return [int(count) for count in replies[::2]]
