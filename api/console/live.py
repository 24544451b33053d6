"""What the console's pages show live, read once per interval per process and fanned out.

`ConsoleFeed.tick` reads everything one update needs: the SKUs with their levels (one pipelined
script call per page of SKUs), the whole service's per-second figures (api/console/stats.py), the
sync backlog per partition stream, and new ledger rows (expiries, out-of-stock events).
`LiveHub` runs one poller task per process while at least one page is open and hands each update
to every open page, so ten pages cost what one does; the last page to close stops the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import orjson
from redis.exceptions import RedisError

from api.console import ledger_reads
from api.console.stats import Second, read_seconds
from api.ledger import Ledger
from engine import catalog
from engine.engine import ReservationEngine
from engine.streams import partition_lag
from engine.types import SkuSnapshot

log = logging.getLogger("flashsale.api")

WINDOW_SECONDS = 300  # what the charts show
OVERLAP_SECONDS = 10  # seconds read again each tick: late flushes and ledger rows land there
MAX_SKUS = 200  # the overview shows this many SKUs (partition order, then by name)
LEDGER_RETRY_SECONDS = 10.0


class ConsoleFeed:
    def __init__(self, engine: ReservationEngine, ledger: Ledger) -> None:
        self.engine = engine
        self.ledger = ledger
        self.points: dict[int, dict[str, Any]] = {}
        self._read_until = 0  # the stats seconds before this one were read at least once
        self._ledger_after: int | None = None  # ledger rows up to this id were counted
        self._expired: dict[int, set[str]] = {}  # second -> reservations that expired in it
        self._out_since: dict[str, datetime | None] = {}  # SKU -> when it went out of stock
        self._ledger_retry_at = 0.0
        self.latest: dict[str, Any] = {}

    async def tick(self) -> dict[str, Any]:
        """One update: the SKUs now, and the points of the seconds that changed."""
        now = int(time.time())
        first = max(now - WINDOW_SECONDS, self._read_until - OVERLAP_SECONDS)
        seconds = list(range(first, now))
        stats = await read_seconds(self.engine.redis, seconds)
        names, _ = await catalog.list_skus(self.engine, None, MAX_SKUS)
        snapshots = await catalog.snapshots(self.engine, names)
        lag = await partition_lag(self.engine.redis, self.engine.keys)
        ledger_ok = await self._read_ledger(names)
        self._read_until = now
        for second in stats:
            self.points[second.t] = _point(second, len(self._expired.get(second.t, ())))
        if seconds:
            self.points[seconds[-1]]["lag_ms"] = {
                str(p.partition): p.oldest_unsynced_age_ms for p in lag
            }
        for t in [t for t in self.points if t < now - WINDOW_SECONDS]:
            del self.points[t]
        for t in [t for t in self._expired if t < now - WINDOW_SECONDS]:
            del self._expired[t]
        self.latest = {
            "now": now,
            "ledger": ledger_ok,
            "skus": [self._sku(s) for s in snapshots],
            "lag": [
                {
                    "partition": p.partition,
                    "pending": p.pending,
                    "age_ms": p.oldest_unsynced_age_ms,
                    "synced": p.synced,
                    "worker": p.group_exists,
                }
                for p in lag
            ],
        }
        return {**self.latest, "points": [self.points[t] for t in seconds if t in self.points]}

    def full(self) -> dict[str, Any]:
        """The latest update with every point of the window: what a page that just opened needs."""
        return {**self.latest, "points": [self.points[t] for t in sorted(self.points)]}

    async def _read_ledger(self, names: list[str]) -> bool:
        # A ledger that did not answer is asked again only after a pause: each failed read can
        # take its connect timeout, and the levels must keep coming meanwhile.
        if time.monotonic() < self._ledger_retry_at:
            return False
        ok = await self._read_ledger_rows(names)
        if not ok:
            self._ledger_retry_at = time.monotonic() + LEDGER_RETRY_SECONDS
        return ok

    async def _read_ledger_rows(self, names: list[str]) -> bool:
        if self._ledger_after is None:
            self._ledger_after = await ledger_reads.start_id(self.ledger)
            if self._ledger_after is None:
                return False
        unknown = [sku for sku in names if sku not in self._out_since]
        if unknown:
            rows = await ledger_reads.last_thresholds(self.ledger, unknown)
            if rows is None:
                return False
            for sku in unknown:
                self._out_since[sku] = None
            for row in rows:
                self._out_since[row["sku"]] = _out_since(row)
        types = ("expired", "out_of_stock", "back_in_stock")
        rows = await ledger_reads.new_rows(self.ledger, self._ledger_after, types)
        if rows is None:
            return False
        for row in rows:
            self._ledger_after = int(row["id"])
            if row["type"] == "expired":
                self._expired.setdefault(int(row["t"]), set()).add(row["reservation_id"] or "")
            else:
                self._out_since[row["sku"]] = _out_since(row)
        for t in {int(row["t"]) for row in rows if row["type"] == "expired"}:
            if t in self.points:
                self.points[t]["expiries"] = len(self._expired[t])
        return True

    def _sku(self, snapshot: SkuSnapshot) -> dict[str, Any]:
        levels = [
            {
                "location": lvl.location,
                "on_hand": lvl.on_hand,
                "available": lvl.available,
                "reserved": lvl.reserved,
                "committed": lvl.committed,
                "backorder_limit": lvl.backorder_limit,
            }
            for lvl in (*snapshot.locations, snapshot.total)
        ]
        since = self._out_since.get(snapshot.sku)
        return {
            "sku": snapshot.sku,
            "locations": levels[:-1],
            "total": levels[-1],
            "backorders": sum(max(0, -lvl.available) for lvl in snapshot.locations),
            "out_of_stock_since": since.isoformat() if since else None,
            "low_stock_threshold": snapshot.config.low_stock_threshold,
        }


def _point(second: Second, expiries: int) -> dict[str, Any]:
    return {
        "t": second.t,
        "reserves": second.reserves,
        "commits": second.commits,
        "expiries": expiries,
        "refusals": second.refusals,
        "p50_ms": second.percentile(0.5),
        "p99_ms": second.percentile(0.99),
    }


def _out_since(row: dict[str, Any]) -> datetime | None:
    return row["occurred_at"] if row["type"] == "out_of_stock" else None


Frame = bytes
_QUEUE_FRAMES = 8  # a page this far behind skips updates (the next ones repeat recent seconds)


def frame(payload: dict[str, Any]) -> Frame:
    """One Server-Sent Events message."""
    return b"data: " + orjson.dumps(payload, default=str) + b"\n\n"


class LiveHub:
    def __init__(
        self,
        tick: Callable[[], Awaitable[dict[str, Any]]],
        full: Callable[[], dict[str, Any]],
        interval: float,
    ) -> None:
        self._tick = tick
        self._full = full
        self.interval = interval
        self._subscribers: set[asyncio.Queue[Frame]] = set()
        self._task: asyncio.Task[None] | None = None
        self._primed = False
        self.polls = 0  # ticks run since start: what tests count

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def polling(self) -> bool:
        return self._task is not None and not self._task.done()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Frame]]:
        queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=_QUEUE_FRAMES)
        if self._primed:
            queue.put_nowait(frame(self._full()))
        self._subscribers.add(queue)
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="console-poller")
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
            if not self._subscribers:
                await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._primed = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            try:
                payload = await self._tick()
                message = frame(self._full() if not self._primed else payload)
                self._primed = True
            except RedisError as exc:
                log.warning("console update failed: %s", exc)
                message = frame({"error": "the stock store is unavailable, retrying"})
            except Exception:  # the poller must outlive any one bad update, or pages freeze
                log.exception("console update failed")
                message = frame({"error": "the console could not read an update, retrying"})
            self.polls += 1
            for queue in list(self._subscribers):
                if not queue.full():
                    queue.put_nowait(message)
            await asyncio.sleep(self.interval)
