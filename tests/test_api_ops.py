"""/healthz, /readyz and /metrics: no key needed; readiness checks Redis, Postgres, worker lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.routes import ops
from flashsale.embedded import EmbeddedRedis
from tests.api_harness import STOREFRONT, Api, api_settings, assert_problem, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str, pg_database_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url, pg_database_url)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


async def test_healthz_answers_without_a_key(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_checks_redis_postgres_and_the_worker(api: Api) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"redis": "ok", "postgres": "ok", "worker": "ok"}
    (partition,) = body["partitions"]
    assert partition["partition"] == 0 and partition["length"] >= 1  # the SKU's events


async def test_readyz_is_503_while_the_database_is_unreachable(
    redis_client: object, redis_url: str
) -> None:
    settings = api_settings(redis_url, "postgresql://nobody@127.0.0.1:1/none")
    async with running_api(settings) as api:
        response = await api.client.get("/readyz")
        body = assert_problem(response, 503, "not_ready")
        assert body["checks"]["postgres"] == "unavailable" and body["checks"]["redis"] == "ok"
        assert "postgres" in body["detail"]


async def test_readyz_is_503_when_the_worker_falls_behind(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "MAX_SYNC_LAG_MS", 0)  # no worker runs here: the events wait
    await asyncio.sleep(0.01)
    body = assert_problem(await api.client.get("/readyz"), 503, "not_ready")
    assert body["checks"]["worker"].startswith("lagging")
    assert body["partitions"][0]["oldest_unsynced_age_ms"] > 0


async def test_metrics_count_requests_by_route_refusals_and_stream_lag(api: Api) -> None:
    await api.client.get("/v1/inventory/nope", headers=STOREFRONT)
    await api.client.get("/v1/inventory/s1", headers=STOREFRONT)
    await api.reserve(11)
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'flashsale_http_requests_total{method="GET",route="/v1/inventory/{sku}",status="404"} 1.0'
        in text
    )
    assert 'route="/v1/inventory/{sku}",status="200"} 1.0' in text
    assert 'flashsale_engine_refusals_total{code="insufficient_stock"} 1.0' in text
    assert 'flashsale_engine_refusals_total{code="unknown_sku"} 1.0' in text
    assert "flashsale_http_request_duration_seconds_bucket" in text
    assert 'flashsale_stream_length{partition="0"}' in text
    assert 'flashsale_stream_oldest_unsynced_age_seconds{partition="0"}' in text


async def test_unknown_paths_share_one_metrics_label(api: Api) -> None:
    for n in range(3):
        await api.client.get(f"/nope/{n}")
    text = (await api.client.get("/metrics")).text
    assert 'route="<unmatched>",status="404"} 3.0' in text
    assert "/nope/" not in text


# ---- readiness is cached: a flood of probes costs one check ---------------------------------


async def test_concurrent_readyz_calls_share_one_probe(api: Api) -> None:
    before = await _script_calls(api)
    responses = await asyncio.gather(*(api.client.get("/readyz") for _ in range(40)))
    assert all(r.status_code == 200 for r in responses), responses[0].text
    # One probe, not 40: the readiness script, and the fence status of each partition.
    assert await _script_calls(api) - before == 1 + api.ctx.engine.keys.partitions
    assert api.ctx.readiness.probes == 1
    # Within the window the verdict is reused; after it, the next call probes again.
    assert (await api.client.get("/readyz")).status_code == 200
    assert api.ctx.readiness.probes == 1
    await asyncio.sleep(api.ctx.readiness.ttl_seconds + 0.05)
    assert (await api.client.get("/readyz")).status_code == 200
    assert api.ctx.readiness.probes == 2


async def test_readyz_turns_false_within_the_window_after_redis_goes_away(
    tmp_path: Path, pg_database_url: str
) -> None:
    server = EmbeddedRedis(tmp_path / "redis")  # a Redis of its own, to stop
    url = server.start()
    try:
        async with running_api(api_settings(url, pg_database_url)) as api:
            assert (await api.client.get("/readyz")).status_code == 200
            server.stop()
            stopped = time.monotonic()
            while (response := await api.client.get("/readyz")).status_code == 200:
                assert time.monotonic() - stopped < api.ctx.readiness.ttl_seconds + 0.5
                await asyncio.sleep(0.05)
            body = assert_problem(response, 503, "not_ready")
            assert body["checks"]["redis"].startswith("unavailable")
            # Liveness checks nothing: the process still answers.
            assert (await api.client.get("/healthz")).status_code == 200
    finally:
        server.stop()


async def _script_calls(api: Api) -> int:
    stats = await api.ctx.engine.redis.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_fcall")
    )
