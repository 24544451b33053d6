"""Fixed-window rate limits kept in Redis, so every API worker and host counts together.

One round trip per check: INCR and PEXPIRE in one MULTI, so a counter never lives without its
expiry even if the process dies between the two commands.
"""

from __future__ import annotations

import math
import time

from api.problems import ApiProblem
from engine.connection import RedisClient
from engine.keys import rate_limit

_EXPIRY_SLACK_MS = 1_000  # the counter outlives its window a little: clocks of API hosts differ


class RateLimiter:
    def __init__(self, redis: RedisClient, window_seconds: int) -> None:
        self.redis = redis
        self.window_ms = window_seconds * 1000

    async def hit(self, scope: str, subject: str, limit: int) -> None:
        """Counts one request; raises a 429 problem past `limit` per window (0 = no limit)."""
        if limit <= 0:
            return
        now_ms = int(time.time() * 1000)
        window = now_ms // self.window_ms
        left_ms = (window + 1) * self.window_ms - now_ms
        key = rate_limit(scope, subject, window)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.pexpire(key, left_ms + _EXPIRY_SLACK_MS)
            count, _ = await pipe.execute()
        if int(count) > limit:
            retry_after = max(1, math.ceil(left_ms / 1000))
            raise ApiProblem(
                429,
                "rate_limited",
                f"more than {limit} requests per {self.window_ms // 1000} s for this {scope}",
                headers={"Retry-After": str(retry_after)},
                limit=limit,
                retry_after=retry_after,
            )
