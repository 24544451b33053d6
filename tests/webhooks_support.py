"""Shared by the tests/test_webhooks_*.py modules: a real receiver, ledger rows, a dispatcher.

No tests here. The receiver is a small ASGI app on uvicorn in a thread, on a port of its own
that survives a stop and start (a receiver "down" and back). It verifies every request with the
`standardwebhooks` library, as a real receiver would, and keeps what it accepted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

from flashsale.procs import free_port
from tests.worker_support import REPO
from webhooks.dispatcher import Dispatcher
from webhooks.settings import WebhookSettings

ALL_EVENTS = [
    "inventory.low_stock",
    "inventory.out_of_stock",
    "inventory.back_in_stock",
    "inventory.adjusted",
    "reservation.committed",
    "reservation.released",
    "reservation.expired",
    "reservation.fulfilled",
]
# Quick retries and short windows: a test sees minutes of behaviour in seconds.
FAST: dict[str, Any] = {
    "webhook_poll_seconds": 0.05,
    "webhook_timeout_seconds": 2.0,
    "webhook_backoff_base_seconds": 0.1,
    "webhook_backoff_max_seconds": 0.5,
    "webhook_retry_horizon_seconds": 120.0,
    "webhook_disable_after_seconds": 120.0,
}
LEDGER_ROW = """
INSERT INTO inventory_transactions (partition, stream_id, type, sku, location, d_on_hand,
    d_reserved, d_committed, on_hand, reserved, committed, available, reservation_id,
    backordered, occurred_at)
VALUES (0, %s, %s, %s, 'wh-1', 0, 0, 1, 10, 0, %s, %s, %s, 0, now())
RETURNING id
"""


def fast_settings(**changes: Any) -> WebhookSettings:
    return WebhookSettings(**{**FAST, **changes})


def libpq(url: str) -> str:
    return url.replace("+psycopg", "", 1)


@dataclass
class Received:
    message_id: str
    payload: dict[str, Any]

    @property
    def sku(self) -> str:
        return str(self.payload["data"].get("sku"))

    @property
    def ledger_id(self) -> int:
        return int(self.payload["data"]["ledger_id"])


@dataclass
class Receiver:
    """Answers `status` after `delay` seconds if the signature verifies, else 400."""

    secret: str = ""
    status: int = 200
    delay: float = 0.0
    trickle: float = 0.0  # seconds of answer body sent a byte at a time, 0.2 s apart
    port: int = field(default_factory=free_port)
    accepted: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    requests: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def unique(self) -> list[Received]:
        """What a receiver that drops repeated webhook-ids keeps, in arrival order."""
        seen: set[str] = set()
        kept = []
        for message in list(self.accepted):
            if message.message_id not in seen:
                seen.add(message.message_id)
                kept.append(message)
        return kept

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            self.rejected.append(str(exc))
            status = 400
        else:
            status = self.status
            if 200 <= status < 300:
                self.accepted.append(Received(headers["webhook-id"], payload))
        await send({"type": "http.response.start", "status": status, "headers": []})
        for _ in range(int(self.trickle / 0.2)):
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b""})

    def start(self) -> None:
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            self._server = self._thread = None


@asynccontextmanager
async def receiving(**kwargs: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(**kwargs)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@asynccontextmanager
async def running_dispatcher(
    database_url: str, settings: WebhookSettings | None = None
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(database_url, settings or fast_settings())
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 30)


def dispatcher_process(
    database_url: str, redis_url: str, **changes: Any
) -> subprocess.Popen[bytes]:
    """`flashsale webhooks run` as a child process."""
    env = dict(os.environ)
    env.update(FLASHSALE_DATABASE_URL=database_url, FLASHSALE_REDIS_URL=redis_url)
    for name, value in {**FAST, **changes}.items():
        env[f"FLASHSALE_{name.upper()}"] = str(value)
    args = [sys.executable, "-m", "flashsale", "webhooks", "run"]
    return subprocess.Popen(args, env=env, cwd=REPO, stderr=subprocess.DEVNULL)


def insert_ledger_rows(database_url: str, rows: list[tuple[str, str]]) -> list[int]:
    """(type, sku) rows into the ledger, as the sync worker would write them; their ids."""
    ids = []
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        for n, (kind, sku) in enumerate(rows):
            stream_id = f"{time.time_ns()}-{n}"
            cur = conn.execute(LEDGER_ROW, (stream_id, kind, sku, n, 10 - n, f"r{n}"))
            found = cur.fetchone()
            assert found is not None
            ids.append(int(found[0]))
    return ids


def deliveries(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(libpq(database_url)) as conn:
        cur = conn.execute(
            "SELECT id, status, attempts, last_error, ledger_id FROM webhook_deliveries ORDER BY id"
        )
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 20, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def now() -> datetime:
    return datetime.now(UTC)
