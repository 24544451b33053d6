"""GET /v1/skus (paging, filters, auth) and GET /v1/skus/{sku}."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api_harness import ADMIN, STOREFRONT, Api, api_settings, assert_problem, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url, partitions=3)) as api:
        yield api


async def all_pages(api: Api, limit: int, **params: object) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        response = await api.client.get("/v1/skus", params=query, headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["skus"]) <= limit
        pages.append([item["sku"] for item in body["skus"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_paging_lists_every_sku_once_in_pages_of_at_most_limit(api: Api) -> None:
    names = {f"sku-{n:02d}" for n in range(23)}
    for name in names:
        await api.put_sku(name, on_hand=5)
    pages = await all_pages(api, limit=4)
    listed = [sku for page in pages for sku in page]
    assert sorted(listed) == sorted(names)
    assert all(len(page) == 4 for page in pages[:-1])


async def test_an_empty_store_lists_nothing(api: Api) -> None:
    response = await api.client.get("/v1/skus", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"skus": [], "next_cursor": None}


async def test_items_carry_config_and_levels_in_the_put_and_inventory_shapes(api: Api) -> None:
    await api.put_sku("s1", on_hand=10, purchase_limit=2, low_stock_threshold=3)
    assert (await api.reserve(2)).status_code == 201
    (item,) = (await api.client.get("/v1/skus", headers=ADMIN)).json()["skus"]
    one = (await api.client.get("/v1/skus/s1", headers=ADMIN)).json()
    assert item == one
    put_shape = (await api.client.put("/v1/skus/s1", json={}, headers=ADMIN)).json()
    assert one["config"] == put_shape
    inventory = (await api.client.get("/v1/inventory/s1", headers=STOREFRONT)).json()
    assert one["inventory"] == inventory
    assert one["inventory"]["total"]["reserved"] == 2
    assert (one["sold_out"], one["low_stock"]) == (False, False)


async def test_filters_sold_out_and_low_stock(api: Api) -> None:
    await api.put_sku("plenty", on_hand=50, low_stock_threshold=5)
    await api.put_sku("low", on_hand=4, low_stock_threshold=5)
    await api.put_sku("gone", on_hand=1, low_stock_threshold=5)
    assert (await api.reserve(1, sku="gone")).status_code == 201
    backorder = {"locations": [{"location": "wh-1", "on_hand": 0, "backorder_limit": 3}]}
    response = await api.client.put("/v1/skus/preorder", json=backorder, headers=ADMIN)
    assert response.status_code == 201

    async def listed(**params: object) -> list[str]:
        return sorted(sku for page in await all_pages(api, 2, **params) for sku in page)

    assert await listed(sold_out="true") == ["gone"]
    assert await listed(sold_out="false") == ["low", "plenty", "preorder"]
    assert await listed(low_stock="true") == ["low"]
    assert await listed(low_stock="true", sold_out="true") == []


async def test_reads_need_an_admin_key(api: Api) -> None:
    await api.put_sku("s1")
    for path in ("/v1/skus", "/v1/skus/s1"):
        assert_problem(await api.client.get(path), 401, "unauthenticated")
        assert_problem(await api.client.get(path, headers=STOREFRONT), 403, "forbidden")


async def test_unknown_sku_is_404_and_a_bad_cursor_422(api: Api) -> None:
    assert_problem(await api.client.get("/v1/skus/nope", headers=ADMIN), 404)
    for cursor in ("abc", "0.0", "0.-1.0", "0.99999999999999999999.0"):
        response = await api.client.get("/v1/skus", params={"cursor": cursor}, headers=ADMIN)
        assert_problem(response, 422)
    # A well-formed cursor past the last partition (another deployment's) is the end.
    beyond = await api.client.get("/v1/skus", params={"cursor": "9.0.0"}, headers=ADMIN)
    assert beyond.json() == {"skus": [], "next_cursor": None}
    assert_problem(await api.client.get("/v1/skus?limit=0", headers=ADMIN), 422)
