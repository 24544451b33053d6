"""A readiness verdict shared for a moment: /readyz needs no key, so a flood of it must stay cheap.

A probe runs a script in Redis and a query in Postgres. Without sharing, 40 connections polling
/readyz put 40 of each in front of every reserve; with it they cost one per `ttl_seconds`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Short enough that an orchestrator sees an outage within a probe period or two.
READINESS_TTL_SECONDS = 1.0


class SharedProbe(Generic[T]):
    """Reuses the last result for `ttl_seconds`; while a probe runs, callers await that one."""

    def __init__(self, ttl_seconds: float = READINESS_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self.probes = 0  # probes actually run (for tests and curiosity)
        self._result: T | None = None
        self._at = 0.0
        self._running: asyncio.Future[T] | None = None

    async def get(self, probe: Callable[[], Awaitable[T]]) -> T:
        if self._result is not None and time.monotonic() - self._at < self.ttl_seconds:
            return self._result
        if self._running is None:
            self._running = asyncio.ensure_future(self._run(probe))
        # Shielded: a caller that goes away must not cancel the probe the others wait for.
        return await asyncio.shield(self._running)

    async def _run(self, probe: Callable[[], Awaitable[T]]) -> T:
        self.probes += 1
        try:
            result = await probe()
        finally:
            self._running = None
        # Timed from the end: a slow probe's verdict still lives its full window.
        self._result, self._at = result, time.monotonic()
        return result
