"""The reserve lane (api/reserve_lane.py) answers POST /v1/reservations as the FastAPI route does.

Every request below is sent to an app with the lane and to one without it, each on an empty
Redis: status, headers and body must be the same bytes (but for what differs by nature: the
expiry instant and the token's random incarnation), and so must the metrics they leave. A witness
outside the app records whether FastAPI's router saw each request, so the lane is shown to answer
what it should and to hand on the rest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from tests.api_harness import ADMIN, STOREFRONT, STOREFRONT_KEY, api_settings

JSON = {"Content-Type": "application/json"}


def cart(quantity: Any = 1, sku: str = "s1", **body: Any) -> dict[str, Any]:
    return {"customer_id": "c1", "lines": [{"sku": sku, "quantity": quantity}], **body}


@dataclass(frozen=True)
class Case:
    name: str
    lane: bool | None  # answered by the lane, handed on to FastAPI, or refused before both
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(STOREFRONT))
    method: str = "POST"
    path: str = "/v1/reservations"


CASES = [
    Case("held", True, cart(), headers={**STOREFRONT, "Idempotency-Key": "k1"}),
    Case("replayed", True, cart(), headers={**STOREFRONT, "Idempotency-Key": "k1"}),
    Case("conflict", True, cart(2), headers={**STOREFRONT, "Idempotency-Key": "k1"}),
    Case("id in the body", True, cart(reservation_id="r-body")),
    Case(
        "ids differ",
        True,
        cart(reservation_id="r-x"),
        headers={**STOREFRONT, "Idempotency-Key": "k2"},
    ),
    Case("unknown sku", True, cart(sku="nope")),
    Case("insufficient", True, cart(50)),
    Case("ttl out of range", True, cart(ttl_seconds=10**8)),
    Case("quantity over the cap", True, cart(10**6)),
    Case("integral float", True, cart(1.0), headers={**STOREFRONT, "Idempotency-Key": "k3"}),
    Case("admin key", True, cart(), headers={**ADMIN, "Idempotency-Key": "k4"}),
    Case(
        "scheme in lower case",
        True,
        cart(),
        headers={"Authorization": f"bearer {STOREFRONT_KEY}", "Idempotency-Key": "k5"},
    ),
    Case(
        "charset",
        True,
        content=b'{"customer_id":"c1","lines":[{"sku":"s1","quantity":1}]}',
        headers={**STOREFRONT, "Content-Type": "application/json; charset=utf-8"},
    ),
    Case("last unit", True, cart(sku="one"), headers={**STOREFRONT, "Idempotency-Key": "k6"}),
    Case("sold out, from Redis", True, cart(sku="one")),
    Case("sold out, from memory", True, cart(sku="one")),
    Case(
        "sold out, new id", True, cart(sku="one"), headers={**STOREFRONT, "Idempotency-Key": "k7"}
    ),
    Case(
        "replay after sell-out",
        True,
        cart(sku="one"),
        headers={**STOREFRONT, "Idempotency-Key": "k6"},
    ),
    # Handed on: FastAPI's own answers.
    Case("no key", False, cart(), headers={}),
    Case("no scheme", False, cart(), headers={"Authorization": STOREFRONT_KEY}),
    Case("basic", False, cart(), headers={"Authorization": "Basic eDp5"}),
    Case("unknown key", False, cart(), headers={"Authorization": "Bearer nope"}),
    Case("quantity 0", False, cart(0)),
    Case("quantity as a string", False, cart("2")),
    Case("unknown member", False, cart(quantiy=1)),
    Case("no lines", False, {"customer_id": "c1", "lines": []}),
    Case("not an object", False, [cart()]),
    Case("bad customer id", False, {**cart(), "customer_id": "a b"}),
    Case("bad idempotency key", False, cart(), headers={**STOREFRONT, "Idempotency-Key": "a b"}),
    Case(
        "long idempotency key", False, cart(), headers={**STOREFRONT, "Idempotency-Key": "k" * 65}
    ),
    Case("broken json", False, content=b'{"customer_id": "c1", "lines": [', headers=STOREFRONT),
    Case("NaN", False, content=b'{"customer_id":"c1","lines":[{"sku":"s1","quantity":NaN}]}'),
    Case("no body", False, content=b"", headers=STOREFRONT),
    Case("text body", None, content=b"hello", headers={**STOREFRONT, "Content-Type": "text/plain"}),
    Case(
        "json suffix type",
        False,
        content=b'{"customer_id":"c1","lines":[{"sku":"s1","quantity":1}]}',
        headers={**STOREFRONT, "Content-Type": "application/vnd.cart+json"},
    ),
    Case("too large", None, cart(reservation_id="r" * 5000)),
    Case("get", False, method="GET"),
    Case("trailing slash", False, cart(), path="/v1/reservations/"),
]

# What differs between two identical runs by nature: the instant, and the random incarnation the
# token carries (the same id gets another one in each run), and what follows from them (lengths,
# the rest of a rate limit's window). Ids made up by the server differ too.
_VARIABLE = [
    (re.compile(rb'"expires_at":"[^"]+"'), b'"expires_at":"<time>"'),
    (re.compile(rb'"reservation_token":"[^"]+"'), b'"reservation_token":"<token>"'),
    (re.compile(rb'"id":"[0-9a-f]{32}"'), b'"id":"<made up>"'),
    (re.compile(rb'"retry_after":\d+'), b'"retry_after":<seconds>'),  # the window's rest
]


class Witness:
    """Outside everything: notes whether FastAPI's router handled each request."""

    def __init__(self, app: ASGIApp, routed: list[bool]) -> None:
        self.app = app
        self.routed = routed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.routed.append("router" in scope)  # the router sets it on the shared scope


@asynccontextmanager
async def served(
    redis_url: str,
    lane: bool,
    *,
    raise_app_exceptions: bool = True,
    overrides: dict[str, Any] | None = None,
) -> AsyncIterator[Any]:
    app = create_app(
        api_settings(redis_url, api_reserve_lane=lane, max_body_bytes=2048, **(overrides or {}))
    )
    routed: list[bool] = []
    app.add_middleware(Witness, routed=routed)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client, routed, app


def normalised(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = response.content
    for pattern, placeholder in _VARIABLE:
        body = pattern.sub(placeholder, body)
    headers = [
        (name, b"<n>" if name in (b"content-length", b"retry-after") else value)
        for name, value in response.headers.raw
    ]
    return response.status_code, headers, body


async def send(client: httpx.AsyncClient, case: Case) -> httpx.Response:
    headers = dict(case.headers)
    if case.json is not None:
        return await client.request(case.method, case.path, json=case.json, headers=headers)
    if case.content is not None and "Content-Type" not in headers:
        headers.update(JSON)
    return await client.request(case.method, case.path, content=case.content, headers=headers)


async def run(
    client: httpx.AsyncClient, cases: list[Case]
) -> list[tuple[int, list[tuple[bytes, bytes]], bytes]]:
    for sku, units in (("s1", 20), ("one", 1)):
        body = {"locations": [{"location": "wh-1", "on_hand": units}]}
        assert (await client.put(f"/v1/skus/{sku}", json=body, headers=ADMIN)).status_code == 201
    return [normalised(await send(client, case)) for case in cases]


def metric_lines(text: str) -> list[str]:
    wanted = ('flashsale_http_requests_total{method="POST"', "flashsale_engine_refusals_total{")
    return sorted(line for line in text.splitlines() if line.startswith(wanted))


async def test_every_answer_is_the_routes_byte_for_byte(
    redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    answers: dict[bool, list[Any]] = {}
    metrics: dict[bool, list[str]] = {}
    for lane in (True, False):
        await redis_client.flushall()
        async with served(redis_url, lane) as (client, routed, _):
            answers[lane] = await run(client, CASES)
            metrics[lane] = metric_lines((await client.get("/metrics")).text)
            by_router = routed[2 : 2 + len(CASES)]  # after the two PUTs
            expected = [case.lane is False or (case.lane is True and not lane) for case in CASES]
            names = [case.name for case in CASES]
            assert list(zip(names, by_router, strict=True)) == list(
                zip(names, expected, strict=True)
            )
    for case, on, off in zip(CASES, answers[True], answers[False], strict=True):
        assert on == off, case.name
    # The cases reach what they are named for (a typo in a case must not pass as "equal").
    statuses = {case.name: answer[0] for case, answer in zip(CASES, answers[True], strict=True)}
    assert statuses["held"] == 201 and statuses["replayed"] == 200
    assert statuses["sold out, from memory"] == statuses["sold out, new id"] == 409
    assert statuses["replay after sell-out"] == 200
    assert statuses["unknown key"] == 401 and statuses["too large"] == 413
    assert statuses["text body"] == 415 and statuses["get"] == 405
    assert metrics[True] == metrics[False]
    assert any('route="/v1/reservations",status="201"' in line for line in metrics[True])
    assert 'flashsale_engine_refusals_total{code="insufficient_stock"} 4.0' in metrics[True]


@pytest.mark.parametrize("limit", ["rate_limit_per_customer", "rate_limit_per_key"])
async def test_rate_limits_answer_as_the_route_does(
    redis_client: redis.asyncio.Redis, redis_url: str, limit: str
) -> None:
    answers: dict[bool, list[Any]] = {}
    for lane in (True, False):
        await redis_client.flushall()
        async with served(redis_url, lane, overrides={limit: 2}) as (client, _, _):
            cases = [Case(f"try {n}", True, cart()) for n in range(3)]
            answers[lane] = await run(client, cases)
    assert answers[True] == answers[False]
    status, headers, body = answers[True][-1]
    assert status == 429 and b'"code":"rate_limited"' in body
    assert any(name == b"retry-after" for name, _ in headers)


@pytest.mark.parametrize(
    ("failure", "status"), [(RedisConnectionError("refused"), 503), (RuntimeError("bug"), 500)]
)
async def test_failures_get_the_apps_handlers(
    redis_client: redis.asyncio.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    status: int,
) -> None:
    """The lane finds the app's handler for an error (Redis down: 503), and leaves a bug to the
    server-error handler outside every middleware (500), as the router does."""

    async def fail(*args: Any, **kwargs: Any) -> None:
        raise failure

    answers = {}
    for lane in (True, False):
        await redis_client.flushall()
        async with served(redis_url, lane, raise_app_exceptions=False) as (client, _, app):
            await run(client, [])
            monkeypatch.setattr(app.state.ctx.engine, "reserve", fail)
            answers[lane] = normalised(await send(client, Case("failing", True, cart())))
    assert answers[True] == answers[False]
    assert answers[True][0] == status


async def test_a_chunked_body_past_the_cap_gets_the_caps_answer(
    redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    """No Content-Length to refuse it by: the lane stops reading at the cap and hands on what it
    read, and the body cap behind it answers as it would without the lane."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"customer_id":"c1","lines":[{"sku":"s1","quantity":1}],"reservation_id":"'
        for _ in range(5):
            yield b"r" * 1000
        yield b'"}'

    answers = {}
    for lane in (True, False):
        await redis_client.flushall()
        async with served(redis_url, lane) as (client, routed, _):
            await run(client, [])
            reply = await client.post(
                "/v1/reservations", content=chunks(), headers={**STOREFRONT, **JSON}
            )
            answers[lane] = normalised(reply)
            assert routed[-1] is False  # the cap answered, not the router
    assert answers[True] == answers[False]
    assert answers[True][0] == 413 and b'"code":"body_too_large"' in answers[True][2]
