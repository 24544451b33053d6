"""/console: login and session cookie, the live stream, the SKU page; /docs served offline."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from api.app import create_app
from api.console.live import ConsoleFeed
from api.console.session import COOKIE_NAME, SessionSigner
from api.console.stats import StatsRecorder, read_seconds
from flashsale.settings import Settings
from tests.api_harness import (
    ADMIN,
    ADMIN_KEY,
    STOREFRONT,
    STOREFRONT_KEY,
    Api,
    api_settings,
    assert_problem,
    running_api,
)
from tests.worker_support import running_worker, wait_synced


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        yield api


async def logged_in(api: Api) -> httpx.Response:
    response = await api.client.post("/console/api/login", json={"key": ADMIN_KEY})
    assert response.status_code == 204, response.text
    return response


# ---- Session ------------------------------------------------------------------------------


async def test_login_sets_an_httponly_strict_signed_expiring_cookie(api: Api) -> None:
    response = await logged_in(api)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= flags
    assert "samesite=strict" in cookie.lower()
    assert "path=/console" in cookie.lower()
    assert ADMIN_KEY not in cookie
    session = await api.client.get("/console/api/session")
    assert session.status_code == 200
    assert session.json()["expires_at"] > time.time()


async def test_storefront_and_unknown_keys_are_refused(api: Api) -> None:
    refused = await api.client.post("/console/api/login", json={"key": STOREFRONT_KEY})
    assert_problem(refused, 403, "forbidden")
    assert "set-cookie" not in refused.headers
    assert_problem(await api.client.post("/console/api/login", json={"key": "nope"}), 401)
    assert_problem(await api.client.get("/console/api/session"), 401, "unauthenticated")


async def test_a_storefront_bearer_key_does_not_open_the_console(api: Api) -> None:
    assert_problem(await api.client.get("/console/api/session", headers=STOREFRONT), 401)


async def test_logout_clears_the_cookie(api: Api) -> None:
    await logged_in(api)
    response = await api.client.post("/console/api/logout")
    assert response.status_code == 204
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert_problem(await api.client.get("/console/api/session"), 401)


async def test_forged_tampered_or_expired_sessions_are_refused(api: Api) -> None:
    await logged_in(api)
    good = api.client.cookies[COOKIE_NAME]
    expires, key_id, mac = good.split(".")
    signer: SessionSigner = api.app.state.console.signer
    other = SessionSigner("another secret")
    for forged in (
        f"{int(expires) + 3600}.{key_id}.{mac}",  # expiry moved
        other.issue(key_id),  # signed with another secret
        signer.issue(key_id, now=time.time() - signer.lifetime_seconds - 1),  # expired
        "garbage",
    ):
        api.client.cookies.set(COOKIE_NAME, forged)
        assert_problem(await api.client.get("/console/api/session"), 401)


async def test_the_page_and_its_assets_are_served_from_the_package(api: Api) -> None:
    page = await api.client.get("/console")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)
    for asset in re.findall(r"(?:src|href)=\"(/console/static/[^\"]+)\"", page.text):
        assert (await api.client.get(asset)).status_code == 200, asset
    assert (await api.client.get("/console/static/nope.js")).status_code == 404


async def test_sku_page_needs_a_session_and_shows_config_and_levels(api: Api) -> None:
    await api.put_sku("s1", on_hand=5)
    assert_problem(await api.client.get("/console/api/skus/s1"), 401)
    await logged_in(api)
    assert (await api.reserve(2)).status_code == 201
    body = (await api.client.get("/console/api/skus/s1")).json()
    assert body["config"]["locations"][0]["on_hand"] == 5
    assert body["inventory"]["total"]["reserved"] == 2
    assert body["transactions"] is None  # no ledger configured in this app
    assert_problem(await api.client.get("/console/api/skus/nope"), 404)


async def test_sku_page_and_feed_read_the_ledger(redis_client: Redis, redis_url: str, cfg) -> None:
    settings = api_settings(
        redis_url, cfg.database_url, partitions=cfg.partitions, hold_ttl_min_seconds=1
    )
    async with running_api(settings) as api, running_worker(cfg):
        engine = api.ctx.engine
        await api.put_sku("s1", on_hand=1, low_stock_threshold=1)
        await api.put_sku("s2", on_hand=5)
        await logged_in(api)
        feed = ConsoleFeed(engine, api.ctx.ledger)
        assert (await feed.tick())["ledger"] is True
        assert (await api.reserve(1, ttl_seconds=1)).status_code == 201
        await wait_synced(redis_client, engine.keys)
        update = await feed.tick()
        since = {sku["sku"]: sku["out_of_stock_since"] for sku in update["skus"]}
        assert since["s1"] is not None and since["s2"] is None

        await asyncio.sleep(1.2)
        assert await engine.sweep() == 1
        await wait_synced(redis_client, engine.keys)
        await asyncio.sleep(1)  # the expiry's second is over: the feed reads whole seconds
        update = await feed.tick()
        since = {sku["sku"]: sku["out_of_stock_since"] for sku in update["skus"]}
        assert since["s1"] is None  # back in stock since the expiry
        assert sum(point["expiries"] for point in feed.full()["points"]) == 1

        body = (await api.client.get("/console/api/skus/s1")).json()
        types = [row["type"] for row in body["transactions"]]
        assert {"reserved", "expired", "out_of_stock", "back_in_stock"} <= set(types)
        thresholds = [row["type"] for row in body["threshold_events"]]
        assert thresholds == ["back_in_stock", "out_of_stock", "low_stock"]


async def test_without_a_ledger_the_feed_still_shows_levels(api: Api) -> None:
    await api.put_sku("s1", on_hand=3)
    update = await ConsoleFeed(api.ctx.engine, api.ctx.ledger).tick()
    assert update["ledger"] is False
    assert [sku["total"]["available"] for sku in update["skus"]] == [3]


# ---- Whole-service figures ------------------------------------------------------------------


async def test_reserves_refusals_commits_and_latency_reach_redis_per_second(api: Api) -> None:
    await api.put_sku("s1", on_hand=2)
    reservation, headers = await api.held(2)
    assert (await api.reserve(1, customer="c2")).status_code == 409
    commit = await api.client.post(
        f"/v1/reservations/{reservation}/commit", json={"order_id": "o-1"}, headers=headers
    )
    assert commit.status_code == 200, commit.text
    recorder: StatsRecorder = api.app.state.console.recorder
    await recorder.flush(api.ctx.engine.redis)
    now = int(time.time())
    seconds = await read_seconds(api.ctx.engine.redis, list(range(now - 5, now + 1)))
    assert sum(s.reserves for s in seconds) == 1
    assert sum(s.commits for s in seconds) == 1
    assert sum(s.refusals.get("insufficient_stock", 0) for s in seconds) == 1
    assert sum(sum(s.latency) for s in seconds) == 2
    busy = next(s for s in seconds if sum(s.latency))
    assert busy.percentile(0.5) is not None and busy.percentile(0.5) > 0


async def test_two_processes_add_up(redis_client: Redis) -> None:
    one, two = StatsRecorder(), StatsRecorder()
    at = time.time()
    for recorder in (one, two):
        recorder.reserve_answered(201, None, 0.004)
        recorder.reserve_answered(429, "rate_limited", 0.001)
        recorder.reserve_answered(200, None, 0.001)  # an idempotent replay: not a refusal
        await recorder.flush(redis_client)
    (second,) = await read_seconds(redis_client, [int(at)])
    assert (second.reserves, second.refusals) == (2, {"rate_limited": 2})
    assert sum(second.latency) == 6
    assert second.percentile(0.99) == pytest.approx(4.0, abs=1)


# ---- Live stream ---------------------------------------------------------------------------


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """The app on uvicorn in a thread (real HTTP: a stream is read as it is written)."""
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="console-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def frames(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    found = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            found.append(orjson.loads(line.removeprefix("data: ")))
            if len(found) == count:
                return found
    raise AssertionError("the stream ended early")


async def test_stream_emits_levels_and_one_poller_serves_every_page(
    redis_client: object, redis_url: str
) -> None:
    with serving(api_settings(redis_url)) as (url, app):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await client.put(
                "/v1/skus/s1",
                json={"locations": [{"location": "wh-1", "on_hand": 7}]},
                headers=ADMIN,
            )
            assert_problem(await client.get("/console/api/stream"), 401)
            await client.post("/console/api/login", json={"key": ADMIN_KEY})
            hub = app.state.console.hub
            async with client.stream("GET", "/console/api/stream") as first:
                assert first.headers["content-type"].startswith("text/event-stream")
                async with client.stream("GET", "/console/api/stream") as second:
                    got = await frames(first, 2) + await frames(second, 2)
                    assert hub.subscribers == 2
                    polls = hub.polls
                    await asyncio.sleep(3 * hub.interval)
                    assert hub.polls - polls <= 4  # one poller for both pages, not one each
            for update in got:
                (sku,) = update["skus"]
                assert (sku["sku"], sku["total"]["available"]) == ("s1", 7)
            assert "points" in got[0] and "lag" in got[0]
            # Closed pages: their streams end at the next update, and the poller with the last.
            deadline = time.monotonic() + 5
            while hub.subscribers or hub.polling:
                assert time.monotonic() < deadline, (hub.subscribers, hub.polling)
                await asyncio.sleep(0.1)
