"""GET /v1/inventory/{sku}, PUT /v1/skus/{sku}, adjustments and set on_hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.api_harness import (
    ADMIN,
    STOREFRONT,
    Api,
    api_settings,
    assert_problem,
    running_api,
)

LEVEL_FIELDS = {
    "location",
    "on_hand",
    "available",
    "reserved",
    "committed",
    "safety_stock",
    "backorder_limit",
}


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        yield api


async def put(api: Api, sku: str, body: dict) -> tuple[int, dict]:
    response = await api.client.put(f"/v1/skus/{sku}", json=body, headers=ADMIN)
    return response.status_code, response.json()


# ---- GET /v1/inventory/{sku} ---------------------------------------------------------------


async def test_inventory_per_location_and_total_in_the_documented_shape(api: Api) -> None:
    await put(
        api,
        "s1",
        {
            "locations": [
                {"location": "wh-1", "on_hand": 3, "safety_stock": 1},
                {"location": "wh-2", "on_hand": 5, "backorder_limit": 2},
            ]
        },
    )
    await api.reserve(4)  # greedy by priority: 2 from wh-1 (safety stock kept), 2 from wh-2
    response = await api.client.get("/v1/inventory/s1", headers=STOREFRONT)
    assert response.status_code == 200
    body = response.json()
    assert body["sku"] == "s1"
    assert [set(level) for level in body["locations"]] == [LEVEL_FIELDS, LEVEL_FIELDS]
    assert LEVEL_FIELDS <= set(body["total"])
    wh1, wh2 = body["locations"]
    assert (wh1["location"], wh1["on_hand"], wh1["reserved"], wh1["available"]) == ("wh-1", 3, 2, 0)
    assert (wh2["location"], wh2["on_hand"], wh2["reserved"], wh2["available"]) == ("wh-2", 5, 2, 3)
    total = body["total"]
    assert (total["on_hand"], total["reserved"], total["committed"]) == (8, 4, 0)
    assert (total["safety_stock"], total["backorder_limit"], total["available"]) == (1, 2, 3)
    assert body["backorder"]["backordered"] is False


async def test_inventory_says_when_a_backordered_sku_ships(api: Api) -> None:
    await put(
        api,
        "pre",
        {
            "locations": [{"location": "wh-1", "on_hand": 1, "backorder_limit": 3}],
            "backorder_lead_days": 14,
        },
    )
    in_stock = (await api.client.get("/v1/inventory/pre", headers=STOREFRONT)).json()
    assert in_stock["backorder"] == {
        "backordered": False,
        "units_available": 3,
        "lead_days": 14,
        "ships_in_days": None,
        "message": None,
    }
    assert (await api.reserve(2, sku="pre")).status_code == 201
    sold_out = (await api.client.get("/v1/inventory/pre", headers=STOREFRONT)).json()
    assert sold_out["total"]["available"] == -1
    assert sold_out["backorder"]["backordered"] is True
    assert sold_out["backorder"]["ships_in_days"] == 14
    assert sold_out["backorder"]["message"] == "ships in 14 days"
    assert sold_out["backorder"]["units_available"] == 2
    assert (await api.reserve(2, sku="pre", customer="c2")).status_code == 201
    gone = (await api.client.get("/v1/inventory/pre", headers=STOREFRONT)).json()
    assert gone["backorder"]["backordered"] is False and gone["backorder"]["units_available"] == 0


async def test_inventory_of_an_unknown_or_malformed_sku(api: Api) -> None:
    assert_problem(await api.client.get("/v1/inventory/nope", headers=STOREFRONT), 404)
    assert_problem(await api.client.get("/v1/inventory/-bad", headers=STOREFRONT), 422)
    assert_problem(await api.client.get(f"/v1/inventory/{'x' * 65}", headers=STOREFRONT), 422)


# ---- PUT /v1/skus/{sku} ----------------------------------------------------------------------


async def test_put_sku_creates_with_201_then_updates_with_200(api: Api) -> None:
    body = {
        "locations": [
            {"location": "wh-1", "on_hand": 100, "safety_stock": 0, "backorder_limit": 0}
        ],
        "purchase_limit": 0,
        "allocation_strategy": "prioritize-sorting-order",
        "low_stock_threshold": 0,
        "backorder_lead_days": 0,
        "sale_starts_at": None,
        "sale_ends_at": None,
        "max_active_holds_per_customer": 0,
        "max_extensions": 0,
    }
    status, created = await put(api, "s1", body)
    assert status == 201
    assert created["locations"][0]["on_hand"] == 100
    status, updated = await put(api, "s1", {**body, "purchase_limit": 2})
    assert status == 200 and updated["purchase_limit"] == 2


async def test_omitted_members_keep_their_current_value(api: Api) -> None:
    starts = datetime.now(UTC) - timedelta(minutes=1)
    await put(
        api,
        "s1",
        {
            "locations": [{"location": "wh-1", "on_hand": 10, "safety_stock": 2}],
            "purchase_limit": 3,
            "max_extensions": 2,
            "sale_starts_at": starts.isoformat(),
        },
    )
    await api.reserve(3)
    status, body = await put(api, "s1", {"backorder_lead_days": 7})
    assert status == 200
    assert (body["purchase_limit"], body["max_extensions"], body["backorder_lead_days"]) == (
        3,
        2,
        7,
    )
    assert datetime.fromisoformat(body["sale_starts_at"]) == starts.replace(
        microsecond=starts.microsecond // 1000 * 1000
    )
    assert body["locations"] == [
        {"location": "wh-1", "on_hand": 10, "safety_stock": 2, "backorder_limit": 0, "incoming": 0}
    ]
    # A location listed without on_hand or safety_stock keeps both; a new one starts at 0.
    status, body = await put(
        api, "s1", {"locations": [{"location": "wh-1"}, {"location": "wh-2", "on_hand": 4}]}
    )
    assert [(loc["on_hand"], loc["safety_stock"]) for loc in body["locations"]] == [(10, 2), (4, 0)]
    assert (await api.level())["reserved"] == 3
    status, body = await put(api, "s1", {"sale_starts_at": None})
    assert body["sale_starts_at"] is None and body["purchase_limit"] == 3


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"locations": []}, "validation_failed"),
        ({"locations": [{"location": "wh-1", "on_hand": -1}]}, "validation_failed"),
        ({"locations": [{"location": "wh 1"}]}, "validation_failed"),
        ({"locations": [{"location": "wh-1"}, {"location": "wh-1"}]}, "invalid_request"),
        ({"locations": [{"location": "wh-1"}], "purchase_limit": -1}, "validation_failed"),
        (
            {"locations": [{"location": "wh-1"}], "allocation_strategy": "random"},
            "validation_failed",
        ),
        ({"locations": [{"location": "wh-1"}], "purchase_limit": "3"}, "validation_failed"),
        ({"locations": [{"location": "wh-1"}], "colour": "red"}, "validation_failed"),
        (
            {
                "locations": [{"location": "wh-1"}],
                "sale_starts_at": "2030-01-02T00:00:00Z",
                "sale_ends_at": "2030-01-01T00:00:00Z",
            },
            "invalid_request",
        ),
    ],
)
async def test_invalid_sku_configs_are_422(api: Api, body: dict, code: str) -> None:
    response = await api.client.put("/v1/skus/s1", json=body, headers=ADMIN)
    assert_problem(response, 422, code)


async def test_a_new_sku_needs_locations(api: Api) -> None:
    response = await api.client.put("/v1/skus/s1", json={"purchase_limit": 1}, headers=ADMIN)
    assert_problem(response, 422, "invalid_request")


async def test_removing_a_location_that_holds_stock_is_409(api: Api) -> None:
    await put(api, "s1", {"locations": [{"location": "wh-1", "on_hand": 5}]})
    response = await api.client.put(
        "/v1/skus/s1", json={"locations": [{"location": "wh-2", "on_hand": 5}]}, headers=ADMIN
    )
    assert_problem(response, 409, "invariant_violation")


# ---- POST /v1/inventory/{sku}/adjustments ----------------------------------------------------


async def test_restock_and_adjust_change_on_hand(api: Api) -> None:
    await api.put_sku("s1", on_hand=10)
    url = "/v1/inventory/s1/adjustments"
    restock = {"location": "wh-1", "delta": 5, "reason": "received", "reference": "po://4711"}
    response = await api.client.post(url, json=restock, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() | {"sku": "s1"} == response.json()
    assert (response.json()["on_hand"], response.json()["available"]) == (15, 15)
    damaged = {"location": "wh-1", "delta": -3, "reason": "damaged"}
    response = await api.client.post(url, json=damaged, headers=ADMIN)
    assert response.json()["on_hand"] == 12


async def test_an_adjustment_retried_with_its_key_counts_once(api: Api) -> None:
    await api.put_sku("s1", on_hand=10)
    url = "/v1/inventory/s1/adjustments"
    body = {"location": "wh-1", "delta": 5, "reason": "restock"}
    headers = {**ADMIN, "Idempotency-Key": "po-1"}
    for _ in range(3):
        response = await api.client.post(url, json=body, headers=headers)
        assert response.status_code == 200
    assert (await api.level())["on_hand"] == 15
    other = await api.client.post(url, json={**body, "delta": 6}, headers=headers)
    assert_problem(other, 409, "idempotency_conflict")


@pytest.mark.parametrize(
    ("sku", "body", "status", "code"),
    [
        (
            "s1",
            {"location": "wh-1", "delta": -11, "reason": "shrinkage"},
            409,
            "invariant_violation",
        ),
        ("s1", {"location": "wh-9", "delta": 1, "reason": "received"}, 404, "unknown_location"),
        ("nope", {"location": "wh-1", "delta": 1, "reason": "received"}, 404, "unknown_sku"),
        ("s1", {"location": "wh-1", "delta": 0, "reason": "other"}, 422, "invalid_request"),
        ("s1", {"location": "wh-1", "delta": 1, "reason": "stolen"}, 422, "validation_failed"),
        ("s1", {"location": "wh-1", "delta": 1, "reason": "other", "reference": "a b"}, 422, None),
        ("s1", {"location": "wh-1", "delta": 1}, 422, "validation_failed"),
    ],
)
async def test_adjustment_refusals(
    api: Api, sku: str, body: dict, status: int, code: str | None
) -> None:
    await api.put_sku("s1", on_hand=10)
    response = await api.client.post(f"/v1/inventory/{sku}/adjustments", json=body, headers=ADMIN)
    assert_problem(response, status, code)
    assert (await api.level())["on_hand"] == 10


# ---- PUT /v1/inventory/{sku}/locations/{location} --------------------------------------------


async def test_set_on_hand_with_and_without_change_from_quantity(api: Api) -> None:
    await api.put_sku("s1", on_hand=10)
    url = "/v1/inventory/s1/locations/wh-1"
    response = await api.client.put(
        url, json={"on_hand": 8, "reason": "cycle_count"}, headers=ADMIN
    )
    assert response.status_code == 200 and response.json()["on_hand"] == 8
    stale = await api.client.put(
        url, json={"on_hand": 5, "change_from_quantity": 10}, headers=ADMIN
    )
    body = assert_problem(stale, 409, "quantity_stale")
    assert body["current"] == 8
    fresh = await api.client.put(url, json={"on_hand": 5, "change_from_quantity": 8}, headers=ADMIN)
    assert fresh.status_code == 200 and fresh.json()["on_hand"] == 5


async def test_set_on_hand_refusals(api: Api) -> None:
    await api.put_sku("s1", on_hand=10)
    assert_problem(
        await api.client.put("/v1/inventory/s1/locations/wh-9", json={"on_hand": 1}, headers=ADMIN),
        404,
        "unknown_location",
    )
    assert_problem(
        await api.client.put(
            "/v1/inventory/s1/locations/wh-1", json={"on_hand": -1}, headers=ADMIN
        ),
        422,
    )
    assert_problem(
        await api.client.put("/v1/inventory/s1/locations/wh-1", json={}, headers=ADMIN), 422
    )
