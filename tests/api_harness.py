"""Shared by the tests/test_api_*.py modules: an app with its lifespan run, and an httpx client.

No tests here. Each module builds its own `api` fixture from `running_api`, on the conftest's
flushed Redis, so every test starts from an empty store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.deps import ApiContext
from flashsale.settings import Settings

ADMIN_KEY = "test-admin-key"
STOREFRONT_KEY = "test-storefront-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
STOREFRONT = {"Authorization": f"Bearer {STOREFRONT_KEY}"}
PROBLEM = "application/problem+json"
# For an `api` fixture's params: its module's tests run through the reserve lane and without it.
RESERVE_LANE = {"params": [True, False], "ids": ["lane", "route"]}


def api_settings(redis_url: str, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "admin_keys": ADMIN_KEY,
        "storefront_keys": STOREFRONT_KEY,
        "token_secret": "test-token-secret",
        "rate_limit_per_customer": 0,
        "rate_limit_per_key": 0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def ctx(self) -> ApiContext:
        ctx: ApiContext = self.app.state.ctx
        return ctx

    async def put_sku(self, sku: str = "s1", on_hand: int = 10, **config: Any) -> httpx.Response:
        body = {"locations": [{"location": "wh-1", "on_hand": on_hand}], **config}
        response = await self.client.put(f"/v1/skus/{sku}", json=body, headers=ADMIN)
        assert response.status_code in (200, 201), response.text
        return response

    async def reserve(
        self,
        quantity: int = 1,
        *,
        sku: str = "s1",
        customer: str = "c1",
        key: str | None = None,
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        sent = {"customer_id": customer, "lines": [{"sku": sku, "quantity": quantity}], **body}
        extra = {"Idempotency-Key": key} if key else {}
        return await self.client.post(
            "/v1/reservations", json=sent, headers={**(headers or STOREFRONT), **extra}
        )

    async def held(self, quantity: int = 1, **kwargs: Any) -> tuple[str, dict[str, str]]:
        """A fresh hold: its id and the storefront headers that may act on it."""
        response = await self.reserve(quantity, **kwargs)
        assert response.status_code == 201, response.text
        body = response.json()
        return body["id"], with_token(body["reservation_token"])

    async def level(self, sku: str = "s1") -> dict[str, Any]:
        response = await self.client.get(f"/v1/inventory/{sku}", headers=STOREFRONT)
        assert response.status_code == 200, response.text
        total: dict[str, Any] = response.json()["total"]
        return total


def with_token(token: str) -> dict[str, str]:
    return {**STOREFRONT, "X-Reservation-Token": token}


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and engine/API code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "code"} <= body.keys()
    if code is not None:
        assert body["code"] == code, body
    return body


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Api(app, client)


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """The app on uvicorn in a thread, on a free port: real HTTP, real connections."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
