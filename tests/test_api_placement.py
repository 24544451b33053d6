"""PUT/GET /v1/skus/{sku} with a placement group: shown, kept when omitted, never changed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api_harness import ADMIN, Api, api_settings, assert_problem, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url, partitions=16)) as api:
        yield api


async def test_the_group_is_shown_and_kept_when_omitted(api: Api) -> None:
    created = await api.put_sku("s1", on_hand=5, placement_group="spring-drop")
    assert created.status_code == 201
    assert created.json()["placement_group"] == "spring-drop"
    await api.put_sku("s1", on_hand=7)  # omitted: kept
    read = await api.client.get("/v1/skus/s1", headers=ADMIN)
    assert read.status_code == 200
    assert read.json()["config"]["placement_group"] == "spring-drop"
    assert read.json()["inventory"]["total"]["on_hand"] == 7
    await api.put_sku("s2", on_hand=5)
    plain = await api.client.get("/v1/skus/s2", headers=ADMIN)
    assert plain.json()["config"]["placement_group"] is None
    # The same group again is fine.
    again = await api.put_sku("s1", on_hand=8, placement_group="spring-drop")
    assert again.status_code == 200


async def test_another_group_is_a_422_problem_naming_both(api: Api) -> None:
    await api.put_sku("s1", on_hand=5, placement_group="spring-drop")
    body = {"locations": [{"location": "wh-1", "on_hand": 9}], "placement_group": "autumn-drop"}
    refused = await api.client.put("/v1/skus/s1", json=body, headers=ADMIN)
    problem = assert_problem(refused, 422, "placement_group_fixed")
    assert problem["title"] == "Placement group fixed"
    assert problem["sku"] == "s1"
    assert problem["placement_group"] == "spring-drop"
    assert problem["requested"] == "autumn-drop"
    assert "fixed when the SKU is created" in problem["detail"]
    cleared = await api.client.put(
        "/v1/skus/s1", json={**body, "placement_group": None}, headers=ADMIN
    )
    assert assert_problem(cleared, 422, "placement_group_fixed")["placement_group"] == "spring-drop"
    read = await api.client.get("/v1/skus/s1", headers=ADMIN)
    assert read.json()["inventory"]["total"]["on_hand"] == 5  # nothing changed


async def test_a_malformed_group_is_a_validation_problem(api: Api) -> None:
    body = {"locations": [{"location": "wh-1", "on_hand": 1}], "placement_group": "a b"}
    refused = await api.client.put("/v1/skus/s1", json=body, headers=ADMIN)
    assert_problem(refused, 422, "validation_failed")
    missing = await api.client.get("/v1/skus/s1", headers=ADMIN)
    assert missing.status_code == 404
