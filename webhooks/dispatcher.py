"""The dispatcher: ledger rows → deliveries (the outbox) → signed POSTs, retried until done.

Fan-out. Ledger rows after the persisted cursor become one delivery per subscribed, enabled
endpoint, in the same transaction that moves the cursor: a row is turned into deliveries
exactly once, and only rows Postgres holds are ever sent. Ledger ids come from a sequence and
concurrent sync workers commit out of id order, so "id > cursor" alone could pass a row that
commits a moment later with a smaller id. The cursor therefore only moves up to a *safe
horizon*: the sequence's last value read at one poll, once every transaction that was running
at the next poll has finished (`pg_current_snapshot`). Any row with an id at or below the
horizon is then committed (and seen) or never will be.

Sending. Each enabled endpoint gets at most `webhook_max_in_flight_per_endpoint` requests at a
time, so a slow or dead endpoint uses up only its own slots. A delivery is claimed with a lease
(`locked_until`): a dispatcher killed mid-request leaves it to be sent again once the lease
runs out (at-least-once; the `webhook-id` is the same every time, so receivers drop repeats).
An outcome is recorded only if the delivery still carries the lease it was sent under: one
retried by hand (or taken over after the lease ran out) meanwhile is sent again, not overwritten.
Per endpoint and SKU only the oldest pending delivery is sent, so a receiver sees one SKU's
events in ledger order. A failure is retried with exponential backoff and jitter until the
retry horizon, then marked failed; an endpoint without a success for longer than the disable
window is disabled, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from webhooks import events, signing, store
from webhooks.metrics import WebhookMetrics
from webhooks.settings import WebhookSettings

log = logging.getLogger("flashsale.webhooks")

CURSOR = store.CURSOR
LEASE_MARGIN_S = 2.0  # beyond the request timeout: time to record the outcome
PENDING_EVERY_S = 5.0  # how often the pending-deliveries gauge is counted
MAX_WAITING = 1000  # horizon candidates kept while a transaction holds the cursor back
_LEDGER_COLUMNS = ("id", "type", "occurred_at", "recorded_at", *events.DATA_COLUMNS)

_HORIZON_SQL = """SELECT pg_current_snapshot()::text AS snapshot,
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {sequence}) AS last_id"""
# Rows recorded before the oldest enabled endpoint existed go to nobody: skipped in the scan.
_FAN_OUT_ROWS = f"""SELECT {", ".join(dict.fromkeys(_LEDGER_COLUMNS))} FROM inventory_transactions
    WHERE id > %(after)s AND id <= %(upto)s AND type = ANY(%(types)s)
      AND recorded_at >= %(since)s
    ORDER BY id LIMIT %(limit)s"""
_INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries (message_id, endpoint_id, ledger_id, event_type, sku, payload)
SELECT m, e, l, t, s, p::jsonb
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[])
  AS u(m, e, l, t, s, p)
ON CONFLICT (message_id) DO NOTHING
"""
# Due, not leased, and the oldest pending one of its SKU for this endpoint (test messages have no
# SKU and no order).
_CLAIM = """
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.endpoint_id = %(endpoint)s AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND (d.locked_until IS NULL OR d.locked_until < now())
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.endpoint_id = d.endpoint_id AND p.status = 'pending' AND p.sku = d.sku
            AND p.id < d.id)
    ORDER BY d.id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d SET locked_until = now() + %(lease)s * interval '1 second'
FROM due WHERE d.id = due.id
RETURNING d.id, d.message_id, d.payload, d.attempts, d.locked_until
"""
_DELIVERED = """UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,
    last_attempt_at = now(), last_status_code = %(code)s, last_error = NULL,
    last_latency_ms = %(latency)s, finished_at = now(), locked_until = NULL
    WHERE id = %(id)s AND locked_until = %(lease)s"""
_FAILED_ATTEMPT = """UPDATE webhook_deliveries SET attempts = attempts + 1,
    last_attempt_at = now(), last_status_code = %(code)s, last_error = %(error)s,
    last_latency_ms = %(latency)s, locked_until = NULL,
    retry_until = coalesce(retry_until, now() + %(horizon)s * interval '1 second'),
    next_attempt_at = now() + %(delay)s * interval '1 second',
    status = CASE WHEN now() + %(delay)s * interval '1 second'
                       > coalesce(retry_until, now() + %(horizon)s * interval '1 second')
                  THEN 'failed' ELSE 'pending' END,
    finished_at = CASE WHEN now() + %(delay)s * interval '1 second'
                            > coalesce(retry_until, now() + %(horizon)s * interval '1 second')
                       THEN now() END
    WHERE id = %(id)s AND locked_until = %(lease)s RETURNING status"""
_DISABLE = """UPDATE webhook_endpoints e SET enabled = false, disabled_at = now(),
    disabled_reason = 'no successful delivery since '
        || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        || coalesce('; last error: ' || (
            SELECT d.last_error FROM webhook_deliveries d
            WHERE d.endpoint_id = e.id AND d.last_error IS NOT NULL
            ORDER BY d.last_attempt_at DESC LIMIT 1), ''),
    updated_at = now()
    WHERE enabled AND failing_since < now() - %(window)s * interval '1 second'
    RETURNING id, disabled_reason"""


@dataclass
class Horizon:
    """The highest ledger id at or below which every row that will ever commit is visible.

    `observe` is called once per poll with the sequence's last value and the current snapshot's
    xmin/xmax. A last value read at one poll is paired with the next poll's xmax (so even a
    transaction that had drawn an id but not yet its transaction id is covered), and becomes safe
    once xmin has passed that xmax: every transaction running then has finished.
    """

    safe: int = 0
    waiting: list[tuple[int, int | None]] = field(default_factory=list)

    def observe(self, last_id: int, xmin: int, xmax: int) -> int:
        self.waiting = [(m, xmax if x is None else x) for m, x in self.waiting]
        ready = [m for m, x in self.waiting if x is not None and xmin >= x]
        if ready:
            self.safe = max(self.safe, *ready)
        self.waiting = [(m, x) for m, x in self.waiting if x is None or xmin < x]
        if len(self.waiting) > MAX_WAITING:
            # Behind a long transaction: dropping candidates only delays the cursor, never
            # lets it pass a row, so keep every other one.
            self.waiting = self.waiting[::2]
        self.waiting.append((last_id, None))
        return self.safe


def parse_snapshot(text: str) -> tuple[int, int]:
    """`xmin:xmax:xip,…` → (xmin, xmax)."""
    xmin, xmax, _ = text.split(":", 2)
    return int(xmin), int(xmax)


def backoff_seconds(attempt: int, settings: WebhookSettings, rng: random.Random) -> float:
    """Exponential (base · 2^(attempt-1), capped) with jitter: a factor drawn from [0.5, 1]."""
    ceiling = min(
        settings.webhook_backoff_max_seconds,
        settings.webhook_backoff_base_seconds * 2 ** min(attempt - 1, 60),
    )
    return ceiling * rng.uniform(0.5, 1.0)


@dataclass
class _Endpoint:
    id: str
    url: str
    secrets: list[str]


class Dispatcher:
    def __init__(
        self,
        database_url: str,
        settings: WebhookSettings,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or WebhookMetrics()
        self.pool = AsyncConnectionPool(
            database_url.replace("+psycopg", "", 1),
            min_size=1,
            max_size=8,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": 5},
        )
        self.horizon = Horizon()
        self.rng = random.Random()
        self.in_flight: dict[str, set[asyncio.Task[None]]] = defaultdict(set)
        self._stopping = asyncio.Event()
        self._sequence: str | None = None
        self._pending_counted = 0.0
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.webhook_timeout_seconds),
            follow_redirects=False,  # a redirect is an answer other than 2xx: a failure
            headers={"user-agent": "flashsale-webhooks"},
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until `stop()`: poll, fan out, send. Requests in flight finish before it returns."""
        await self.pool.open(wait=False)
        log.info("webhook dispatcher started")
        try:
            while not self._stopping.is_set():
                try:
                    await self.tick()
                except (psycopg.Error, PoolTimeout) as exc:
                    log.warning("webhook dispatcher: database unavailable: %s", exc)
                try:
                    await asyncio.wait_for(
                        self._stopping.wait(), self.settings.webhook_poll_seconds
                    )
                except TimeoutError:
                    pass
        finally:
            tasks = [t for group in self.in_flight.values() for t in group]
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._client.aclose()
            await self.pool.close()
            log.info("webhook dispatcher stopped")

    async def tick(self) -> None:
        while await self.fan_out():
            pass
        await self.disable_failing()
        await self.dispatch()
        await self.observe()

    async def disable_failing(self) -> None:
        """Disable endpoints without a success for longer than the window, saying why.

        Checked every poll, not only after an attempt: an endpoint whose last deliveries have
        failed for good gets no more attempts, and is still one that stopped working.
        """
        async with self.pool.connection() as conn:
            params = {"window": self.settings.webhook_disable_after_seconds}
            cur = await conn.execute(_DISABLE, params)
            for endpoint_id, reason in await cur.fetchall():
                self.metrics.disabled.inc()
                log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)

    async def fan_out(self) -> bool:
        """Turn the next batch of safe ledger rows into deliveries; True if there may be more."""
        async with self.pool.connection() as conn:
            upto = await self._safe_horizon(conn)
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    "INSERT INTO webhook_cursors (name) VALUES (%s) ON CONFLICT DO NOTHING",
                    (CURSOR,),
                )
                await cur.execute(
                    "SELECT ledger_id FROM webhook_cursors WHERE name = %s FOR UPDATE", (CURSOR,)
                )
                row = await cur.fetchone()
                assert row is not None
                after = int(row["ledger_id"])
                if upto <= after:
                    return False
                await cur.execute(
                    "SELECT id, events, created_at FROM webhook_endpoints WHERE enabled"
                )
                endpoints = await cur.fetchall()
                rows: list[dict[str, Any]] = []
                limit = self.settings.webhook_batch_size
                if endpoints:  # none: every row up to the horizon goes to nobody
                    params = {
                        "after": after,
                        "upto": upto,
                        "types": list(events.FROM_LEDGER),
                        "since": min(e["created_at"] for e in endpoints),
                        "limit": limit,
                    }
                    await cur.execute(_FAN_OUT_ROWS, params)
                    rows = await cur.fetchall()
                full = len(rows) == limit
                moved_to = int(rows[-1]["id"]) if full else upto
                values = _deliveries(rows, endpoints)
                if values:
                    await cur.execute(_INSERT_DELIVERIES, _columns(values, 6))
                    self.metrics.fanned_out.inc(cur.rowcount)
                await cur.execute(
                    "UPDATE webhook_cursors SET ledger_id = %s, updated_at = now() WHERE name = %s",
                    (moved_to, CURSOR),
                )
                return full

    async def _safe_horizon(self, conn: psycopg.AsyncConnection) -> int:
        if self._sequence is None:
            cur = await conn.execute(
                "SELECT pg_get_serial_sequence('inventory_transactions', 'id')"
            )
            found = await cur.fetchone()
            assert found is not None and found[0], "the ledger table has no id sequence"
            self._sequence = str(found[0])
        cur = await conn.execute(_HORIZON_SQL.format(sequence=self._sequence))
        row = await cur.fetchone()
        assert row is not None
        xmin, xmax = parse_snapshot(row[0])
        return self.horizon.observe(int(row[1]), xmin, xmax)

    async def dispatch(self) -> None:
        """Claim what each endpoint has room for and start sending it."""
        async with self.pool.connection() as conn:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    """SELECT id, url, secret, previous_secret, previous_secret_expires_at
                    FROM webhook_endpoints WHERE enabled ORDER BY id"""
                )
                endpoints = await cur.fetchall()
            now = datetime.now(UTC)
            lease = self.settings.webhook_timeout_seconds + LEASE_MARGIN_S
            for row in endpoints:
                room = self.settings.webhook_max_in_flight_per_endpoint - len(
                    self.in_flight[row["id"]]
                )
                if room <= 0:
                    continue
                async with conn.cursor(row_factory=dict_row) as cur:
                    params = {"endpoint": row["id"], "limit": room, "lease": lease}
                    await cur.execute(_CLAIM, params)
                    claimed = await cur.fetchall()
                if not claimed:
                    continue
                secrets = [row["secret"]]
                expires = row["previous_secret_expires_at"]
                if row["previous_secret"] and expires is not None and expires > now:
                    secrets.append(row["previous_secret"])
                endpoint = _Endpoint(row["id"], row["url"], secrets)
                for delivery in sorted(claimed, key=lambda d: int(d["id"])):
                    task = asyncio.create_task(self._deliver(endpoint, delivery))
                    group = self.in_flight[endpoint.id]
                    group.add(task)
                    task.add_done_callback(group.discard)

    async def _deliver(self, endpoint: _Endpoint, delivery: dict[str, Any]) -> None:
        body = orjson.dumps(delivery["payload"]).decode()
        headers = signing.headers(delivery["message_id"], body, endpoint.secrets)
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        try:
            # httpx bounds each read, not the whole answer: a receiver trickling bytes would
            # otherwise hold the slot for as long as it likes.
            async with asyncio.timeout(self.settings.webhook_timeout_seconds):
                response = await self._client.post(endpoint.url, content=body, headers=headers)
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        elapsed = time.perf_counter() - started
        self.metrics.attempt_seconds.observe(elapsed)
        self.metrics.attempts.labels("failure" if error else "success").inc()
        try:
            await self._record(endpoint, delivery, code, error, round(elapsed * 1000))
        except (psycopg.Error, PoolTimeout) as exc:
            # The lease runs out and the delivery is sent again: at-least-once.
            log.warning("webhook %s: outcome not recorded: %s", delivery["message_id"], exc)

    async def _record(
        self,
        endpoint: _Endpoint,
        delivery: dict[str, Any],
        code: int | None,
        error: str | None,
        latency_ms: int,
    ) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            if error is None:
                params = {
                    "id": delivery["id"],
                    "lease": delivery["locked_until"],
                    "code": code,
                    "latency": latency_ms,
                }
                cur = await conn.execute(_DELIVERED, params)
                if cur.rowcount:
                    self.metrics.finished.labels("delivered").inc()
                await conn.execute(
                    "UPDATE webhook_endpoints SET failing_since = NULL "
                    "WHERE id = %s AND failing_since IS NOT NULL",
                    (endpoint.id,),
                )
                return
            delay = backoff_seconds(int(delivery["attempts"]) + 1, self.settings, self.rng)
            params = {
                "id": delivery["id"],
                "lease": delivery["locked_until"],
                "code": code,
                "error": error,
                "latency": latency_ms,
                "delay": delay,
                "horizon": self.settings.webhook_retry_horizon_seconds,
            }
            cur = await conn.execute(_FAILED_ATTEMPT, params)
            status = await cur.fetchone()
            if status is not None and status[0] == "failed":
                self.metrics.finished.labels("failed").inc()
                log.warning("webhook %s: failed for good: %s", delivery["message_id"], error)
            await conn.execute(
                "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now()) "
                "WHERE id = %s",
                (endpoint.id,),
            )

    async def observe(self) -> None:
        async with self.pool.connection() as conn:
            self.metrics.lag.set(await store.lag_seconds(conn))
            if time.monotonic() - self._pending_counted >= PENDING_EVERY_S:
                self._pending_counted = time.monotonic()
                cur = await conn.execute(
                    "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
                )
                count = await cur.fetchone()
                self.metrics.pending.set(count[0] if count else 0)


def _deliveries(
    rows: list[dict[str, Any]], endpoints: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """One delivery per (row, subscribed endpoint created before the row was recorded)."""
    values: list[tuple[Any, ...]] = []
    for row in rows:
        event_type = events.FROM_LEDGER[row["type"]]
        body: str | None = None
        for endpoint in endpoints:
            if event_type not in endpoint["events"] or row["recorded_at"] < endpoint["created_at"]:
                continue
            body = body or orjson.dumps(events.payload(row), default=str).decode()
            message_id = f"msg_{row['id']}_{endpoint['id'].removeprefix('ep_')}"
            values.append((message_id, endpoint["id"], row["id"], event_type, row["sku"], body))
    return values


def _columns(values: list[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    return tuple([v[i] for v in values] for i in range(width))
