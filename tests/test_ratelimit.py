"""The API's rate limiter (api/ratelimit.py) on a real Redis: exact under concurrency, batched.

Two limiters stand for two API processes: their concurrent hits on one counter must let exactly
`limit` requests through, and the counter must always carry its expiry.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from api.problems import ApiProblem
from api.ratelimit import RateLimiter

LIMIT = 100


async def _outcomes(limiter: RateLimiter, subject: str, hits: int) -> list[bool]:
    async def one() -> bool:
        try:
            await limiter.hit("customer", subject, LIMIT)
        except ApiProblem as exc:
            assert exc.status == 429 and exc.code == "rate_limited", exc
            return False
        return True

    return list(await asyncio.gather(*(one() for _ in range(hits))))


async def _exec_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_exec", {}).get("calls", 0))


async def test_concurrent_hits_from_two_processes_let_exactly_the_limit_through(
    redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(2)]
    try:
        limiters = [RateLimiter(c, window_seconds=60) for c in clients]
        results = await asyncio.gather(*(_outcomes(lim, "c1", 150) for lim in limiters))
        passed = sum(sum(r) for r in results)
        assert passed == LIMIT, passed
        (key,) = await redis_client.keys("rl:customer:c1:*")
        assert int(await redis_client.get(key)) == 300
        assert 0 < await redis_client.pttl(key) <= 61_000  # never without its expiry
        # Another customer's counter is its own.
        assert all(await _outcomes(limiters[0], "c2", 10))
    finally:
        for c in clients:
            await c.aclose()


async def test_concurrent_hits_share_round_trips(
    redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        limiter = RateLimiter(client, window_seconds=60)
        await redis_client.config_resetstat()
        subjects = [f"c{n}" for n in range(200)]
        await asyncio.gather(*(limiter.hit("customer", s, LIMIT) for s in subjects))
        transactions = await _exec_calls(redis_client)
        # The first goes alone, the rest wait for it and leave together: a handful, not 200.
        assert 1 <= transactions <= 10, transactions
        for s in subjects:
            assert await redis_client.get(next(iter(await redis_client.keys(f"rl:*:{s}:*")))) == "1"
    finally:
        await client.aclose()


async def test_a_failed_round_trip_fails_each_of_its_hits_and_the_limiter_recovers(
    redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    limiter = RateLimiter(client, window_seconds=60)
    await client.aclose()
    broken = redis.asyncio.Redis.from_url("redis://127.0.0.1:1")  # nothing listens there
    limiter.redis = broken
    try:
        results = await asyncio.gather(
            *(limiter.hit("customer", "c1", LIMIT) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, redis.exceptions.ConnectionError) for r in results), results
    finally:
        await broken.aclose()
    limiter.redis = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert all(await _outcomes(limiter, "c1", 3))
    finally:
        await limiter.redis.aclose()


@pytest.mark.parametrize("limit", [0, -1])
async def test_no_limit_counts_nothing(redis_client: redis.asyncio.Redis, limit: int) -> None:
    limiter = RateLimiter(redis_client, window_seconds=60)
    await limiter.hit("customer", "c1", limit)
    assert await redis_client.keys("rl:*") == []
