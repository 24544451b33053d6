"""Per-second figures of the whole service, kept in Redis, for the console's charts.

Every API process counts its reserves (by outcome) and commits, and buckets reserve latency, in
memory; once a second it adds what it counted to one Redis hash per second (`console:stats:<s>`,
HINCRBY in one pipeline, kept ten minutes). So the figures are the sum over every worker and every
host, and a request costs no Redis call: one pipelined write per process per second, none when
idle. The second is the API host's clock, which is fine for hosts kept in sync by NTP.

Fields of a second's hash:
    reserves          201 answers to POST /v1/reservations
    refused:<code>    its 4xx/5xx answers, by problem code (insufficient_stock, rate_limited, …)
    commits           200 answers to POST /v1/reservations/{id}/commit
    lat:<i>           reserves (any answer) whose latency fell in bucket i of LATENCY_EDGES_MS
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.connection import RedisClient

log = logging.getLogger("flashsale.api")

KEY_PREFIX = "console:stats:"
KEEP_SECONDS = 600
# Upper bounds of the latency buckets; a reserve slower than the last one counts in one more.
LATENCY_EDGES_MS = (
    1,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    12,
    15,
    20,
    25,
    30,
    40,
    50,
    60,
    80,
    100,
    120,
    150,
    200,
    250,
    300,
    400,
    500,
    600,
    800,
    1000,
    1500,
    2000,
    3000,
    5000,
)
_COMMIT_PATH = re.compile(r"/v1/reservations/[^/]+/commit")
_MAX_ERROR_BODY = 4096


def stats_key(second: int) -> str:
    return f"{KEY_PREFIX}{second}"


class StatsRecorder:
    """Counts in memory; `flush` adds the counts to Redis (called once a second by `run`)."""

    def __init__(self) -> None:
        self._pending: dict[int, Counter[str]] = {}

    def count(self, name: str, at: float | None = None) -> None:
        second = int(time.time() if at is None else at)
        self._pending.setdefault(second, Counter())[name] += 1

    def reserve_answered(self, status: int, code: str | None, seconds: float) -> None:
        if status == 201:
            self.count("reserves")
        elif status >= 400:  # a 200 is an idempotent replay: neither a new hold nor a refusal
            self.count(f"refused:{code or status}")
        self.count(f"lat:{bisect.bisect_left(LATENCY_EDGES_MS, seconds * 1000)}")

    async def flush(self, redis: RedisClient) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        async with redis.pipeline(transaction=False) as pipe:
            for second, counts in pending.items():
                key = stats_key(second)
                for name, n in counts.items():
                    pipe.hincrby(key, name, n)
                pipe.expire(key, KEEP_SECONDS)
            try:
                await pipe.execute()
            except RedisError as exc:  # the charts miss a second; the sale goes on
                log.warning("console stats not written: %s", exc)

    async def run(self, redis: RedisClient, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            await self.flush(redis)


class StatsMiddleware:
    """Times reserves and notes their outcome; sees commits. Other requests pass untouched."""

    def __init__(self, app: ASGIApp, recorder: StatsRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/v1/reservations":
            await self._reserve(scope, receive, send)
        elif _COMMIT_PATH.fullmatch(path):
            status = await _forward(self.app, scope, receive, send, None)
            if status == 200:
                self.recorder.count("commits")
        else:
            await self.app(scope, receive, send)

    async def _reserve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        body = bytearray()
        status = await _forward(self.app, scope, receive, send, body)
        code = None
        if status != 201:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                code = orjson.loads(bytes(body)).get("code")
        self.recorder.reserve_answered(status, code, time.perf_counter() - started)


async def _forward(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, error_body: bytearray | None
) -> int:
    """Runs the request; returns its status, and keeps an error's body if asked."""
    status = 500

    async def watch(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body" and error_body is not None and status >= 400:
            if len(error_body) < _MAX_ERROR_BODY:
                error_body.extend(message.get("body", b"")[:_MAX_ERROR_BODY])
        await send(message)

    await app(scope, receive, watch)
    return status


@dataclass
class Second:
    """The whole service's figures of one second."""

    t: int
    reserves: int = 0
    commits: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES_MS) + 1))

    def percentile(self, q: float) -> float | None:
        """Latency in ms below which q of the reserves fell (interpolated in its bucket)."""
        total = sum(self.latency)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(self.latency):
            if n and seen + n >= rank:
                low = LATENCY_EDGES_MS[i - 1] if i > 0 else 0
                high = LATENCY_EDGES_MS[i] if i < len(LATENCY_EDGES_MS) else low * 2
                return round(low + (high - low) * (rank - seen) / n, 2)
            seen += n
        return float(LATENCY_EDGES_MS[-1])


async def read_seconds(redis: RedisClient, seconds: Sequence[int]) -> list[Second]:
    """The figures of these seconds, from every API process (one pipelined read)."""
    async with redis.pipeline(transaction=False) as pipe:
        for second in seconds:
            pipe.hgetall(stats_key(second))
        hashes = await pipe.execute()
    return [_second(t, raw) for t, raw in zip(seconds, hashes, strict=True)]


def _second(t: int, raw: dict[bytes | str, bytes | str]) -> Second:
    out = Second(t)
    for name, value in _texts(raw.items()):
        n = int(value)
        if name == "reserves":
            out.reserves = n
        elif name == "commits":
            out.commits = n
        elif name.startswith("refused:"):
            out.refusals[name.removeprefix("refused:")] = n
        elif name.startswith("lat:"):
            index = int(name.removeprefix("lat:"))
            if 0 <= index < len(out.latency):
                out.latency[index] = n
    return out


def _texts(items: Iterable[tuple[bytes | str, bytes | str]]) -> Iterable[tuple[str, str]]:
    for name, value in items:
        yield (
            name.decode() if isinstance(name, bytes) else name,
            value.decode() if isinstance(value, bytes) else value,
        )
