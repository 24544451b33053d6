"""Sale dates: refused before anything is written when outside the range the store keeps exactly,
and a stored value outside it (written before the bound existed) still reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
import redis.asyncio

from engine.errors import InvalidRequest
from engine.types import LocationConfig, SkuConfig, datetime_to_ms, ms_to_datetime
from tests.api_harness import ADMIN, STOREFRONT, Api, api_settings, assert_problem, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


async def stored_config(api: Api, sku: str = "s1") -> dict[str, object]:
    redis_ = api.ctx.engine.redis
    raw = await redis_.hget(api.ctx.engine.keys.for_sku(sku).sku(sku), "cfg")
    config: dict[str, object] = orjson.loads(raw)
    return config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sale_starts_at", "0001-01-01T00:00:00+14:00"),  # year 0 in UTC
        ("sale_ends_at", "9999-12-31T23:59:59-14:00"),  # year 10000 in UTC
        ("sale_ends_at", "9999-12-31T23:59:59.999Z"),  # Redis' JSON would round it to year 10000
        ("sale_starts_at", "1969-12-31T23:59:59Z"),
        ("sale_ends_at", "3000-01-01T00:00:00Z"),
    ],
)
async def test_a_date_outside_the_range_is_422_and_nothing_is_written(
    api: Api, field: str, value: str
) -> None:
    before = await stored_config(api)
    body = {"locations": [{"location": "wh-1"}], field: value}
    response = await api.client.put("/v1/skus/s1", json=body, headers=ADMIN)
    problem = assert_problem(response, 422, "validation_failed")
    assert field in problem["detail"]
    assert "1970-01-01T00:00:00Z" in problem["detail"]
    assert "2999-12-31T23:59:59.999Z" in problem["detail"]
    assert await stored_config(api) == before
    # Nor is a new SKU created by a refused PUT.
    response = await api.client.put("/v1/skus/s2", json=body, headers=ADMIN)
    assert_problem(response, 422, "validation_failed")
    assert (await api.client.get("/v1/inventory/s2", headers=STOREFRONT)).status_code == 404


async def test_the_bounds_themselves_are_accepted_and_read_back_exactly(api: Api) -> None:
    body = {
        "sale_starts_at": "1970-01-01T00:00:00Z",
        "sale_ends_at": "2999-12-31T23:59:59.999Z",
    }
    response = await api.client.put("/v1/skus/s1", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    out = response.json()
    assert datetime.fromisoformat(out["sale_starts_at"]) == datetime(1970, 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(out["sale_ends_at"]) == datetime(
        2999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC
    )
    assert (await api.reserve(1)).status_code == 201


async def test_the_engine_refuses_the_same_dates_before_writing(api: Api) -> None:
    before = await stored_config(api)
    too_early = datetime.fromisoformat("0001-01-01T00:00:00+14:00")
    config = SkuConfig(locations=(LocationConfig("wh-1"),), sale_starts_at=too_early)
    with pytest.raises(InvalidRequest) as refused:
        await api.ctx.engine.configure_sku("s1", config)
    assert refused.value.field == "sale_starts_at"
    assert await stored_config(api) == before


async def test_a_stored_date_outside_the_range_still_reads(
    api: Api, redis_client: redis.asyncio.Redis
) -> None:
    # As the scripts stored it before dates were bounded: cjson writes 14 significant digits.
    config = await stored_config(api)
    config["sale_starts_at"] = -62135647200000  # 0001-01-01T00:00:00+14:00
    config["sale_ends_at"] = 2.53402351199e14  # 9999-12-31T23:59:59-14:00
    key = api.ctx.engine.keys.for_sku("s1").sku("s1")
    await redis_client.hset(key, "cfg", orjson.dumps(config).decode())

    response = await api.client.get("/v1/inventory/s1", headers=STOREFRONT)
    assert response.status_code == 200, response.text
    assert (await api.reserve(1)).status_code == 201  # the window is open: reserves still work
    snapshot = await api.ctx.engine.inventory("s1")
    assert snapshot.config.sale_starts_at == datetime.min.replace(tzinfo=UTC)
    assert snapshot.config.sale_ends_at == datetime.max.replace(microsecond=999000, tzinfo=UTC)

    # A PUT that keeps the stored dates is refused, naming the field; one that fixes them works.
    response = await api.client.put("/v1/skus/s1", json={"purchase_limit": 2}, headers=ADMIN)
    problem = assert_problem(response, 422, "invalid_request")
    assert problem["field"] == "sale_starts_at"
    fixed = {"sale_starts_at": None, "sale_ends_at": "2030-01-01T00:00:00Z"}
    response = await api.client.put("/v1/skus/s1", json=fixed, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["sale_starts_at"] is None


@pytest.mark.parametrize("ms", [-(10**18), -62135647200000, 253402351199000, 10**18])
def test_ms_to_datetime_clamps_instead_of_raising(ms: int) -> None:
    value = ms_to_datetime(ms)
    assert value.tzinfo is not None
    assert datetime.min.replace(tzinfo=UTC) <= value <= datetime.max.replace(tzinfo=UTC)


def test_datetime_to_ms_is_exact_and_takes_any_offset() -> None:
    last_microsecond = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert datetime_to_ms(last_microsecond) == 32503680000000 - 1  # not rounded up to year 3000
    assert datetime_to_ms(datetime.fromisoformat("0001-01-01T00:00:00+14:00")) == -62135647200000
    assert ms_to_datetime(datetime_to_ms(datetime(2026, 5, 1, 12, 0, 0, 1000, tzinfo=UTC))) == (
        datetime(2026, 5, 1, 12, 0, 0, 1000, tzinfo=UTC)
    )
