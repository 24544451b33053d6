"""POST/GET/DELETE /v1/reservations and extend, commit, fulfil: success and refusal paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.api_harness import (
    ADMIN,
    RESERVE_LANE,
    STOREFRONT,
    Api,
    api_settings,
    assert_problem,
    running_api,
)

HOUR_MS = 3_600_000


@pytest.fixture(**RESERVE_LANE)
async def api(
    request: pytest.FixtureRequest, redis_client: object, redis_url: str
) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url, api_reserve_lane=request.param)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


# ---- POST /v1/reservations ---------------------------------------------------------------


async def test_reserve_answers_201_in_the_documented_shape(api: Api) -> None:
    response = await api.reserve(2, ttl_seconds=600)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "held"
    assert body["id"] and body["reservation_token"] and body["expires_at"]
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=590) < expires - datetime.now(UTC) <= timedelta(seconds=601)
    (line,) = body["lines"]
    assert line["sku"] == "s1" and line["quantity"] == 2
    assert line["allocations"] == [
        {"location": "wh-1", "quantity": 2, "backordered": 0, "fulfilled": 0}
    ]
    assert (await api.level())["reserved"] == 2


async def test_retry_with_the_same_idempotency_key_replays_with_200(api: Api) -> None:
    first = await api.reserve(2, key="k-1")
    again = await api.reserve(2, key="k-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] == "k-1"
    assert again.json()["reservation_token"] == first.json()["reservation_token"]
    assert (await api.level())["reserved"] == 2


async def test_reservation_id_in_the_body_is_an_idempotency_key(api: Api) -> None:
    first = await api.reserve(1, reservation_id="r-body")
    again = await api.reserve(1, reservation_id="r-body")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == "r-body"


async def test_same_key_with_a_different_request_is_a_409_conflict(api: Api) -> None:
    assert (await api.reserve(1, key="k-2")).status_code == 201
    assert_problem(await api.reserve(2, key="k-2"), 409, "idempotency_conflict")


async def test_header_and_body_naming_different_ids_is_422(api: Api) -> None:
    response = await api.reserve(1, key="k-3", reservation_id="other")
    assert_problem(response, 422, "validation_failed")


async def test_without_a_key_each_post_is_a_new_hold(api: Api) -> None:
    a, b = await api.reserve(1), await api.reserve(1)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert (await api.level())["reserved"] == 2


async def test_unknown_sku_and_location_are_404(api: Api) -> None:
    assert_problem(await api.reserve(1, sku="nope"), 404, "unknown_sku")
    response = await api.client.post(
        "/v1/reservations",
        json={"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 1, "location": "wh-9"}]},
        headers=STOREFRONT,
    )
    assert_problem(response, 404, "unknown_location")


async def test_insufficient_stock_is_409_and_says_what_is_available(api: Api) -> None:
    body = assert_problem(await api.reserve(11), 409, "insufficient_stock")
    assert body["available"] == 10 and body["requested"] == 11 and body["sku"] == "s1"
    assert (await api.level())["reserved"] == 0


async def test_last_unit_goes_to_exactly_one_buyer(api: Api) -> None:
    assert (await api.reserve(10)).status_code == 201
    assert_problem(await api.reserve(1, customer="c2"), 409, "insufficient_stock")


async def test_purchase_limit_is_409_not_a_rate_limit(api: Api) -> None:
    # 429 would invite clients and proxies to retry; waiting does not lift a purchase limit.
    await api.put_sku("s1", purchase_limit=2)
    assert (await api.reserve(2)).status_code == 201
    refused = await api.reserve(1)
    body = assert_problem(refused, 409, "purchase_limit_exceeded")
    assert "retry-after" not in refused.headers
    assert body["limit"] == 2 and body["remaining"] == 0
    assert (await api.reserve(2, customer="c2")).status_code == 201


async def test_hold_cap_per_customer_is_409_not_a_rate_limit(api: Api) -> None:
    # Lifted by releasing or committing a hold, not by waiting: a conflict with held state.
    await api.put_sku("s1", max_active_holds_per_customer=1)
    assert (await api.reserve(1)).status_code == 201
    refused = await api.reserve(1)
    assert_problem(refused, 409, "too_many_holds")
    assert "retry-after" not in refused.headers


async def test_the_openapi_document_keeps_429_for_rate_limits(api: Api) -> None:
    responses = api.app.openapi()["paths"]["/v1/reservations"]["post"]["responses"]
    assert "purchase limit" in responses["409"]["description"].lower()
    assert "purchase limit" not in responses["429"]["description"].lower()
    assert "rate limit" in responses["429"]["description"].lower()


async def test_sale_window_refusals_are_409_and_say_so(api: Api) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await api.put_sku("s1", sale_starts_at=later)
    body = assert_problem(await api.reserve(1), 409, "sale_not_started")
    assert "not started" in body["detail"]
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    await api.put_sku("s1", sale_starts_at=None, sale_ends_at=earlier)
    body = assert_problem(await api.reserve(1), 409, "sale_ended")
    assert "ended" in body["detail"]


async def test_backordered_units_are_reported_per_allocation(api: Api) -> None:
    await api.client.put(
        "/v1/skus/s2",
        json={"locations": [{"location": "wh-1", "on_hand": 1, "backorder_limit": 5}]},
        headers=ADMIN,
    )
    response = await api.reserve(3, sku="s2")
    assert response.status_code == 201, response.text
    (line,) = response.json()["lines"]
    assert line["backordered"] == 2
    assert line["allocations"][0]["backordered"] == 2


@pytest.mark.parametrize(
    ("line", "extra", "code"),
    [
        ({"sku": "s1", "quantity": 0}, {}, "validation_failed"),
        ({"sku": "s1", "quantity": "1"}, {}, "validation_failed"),
        ({"sku": "s1", "quantity": 1.5}, {}, "validation_failed"),
        ({"sku": "s1", "quantity": 1_000_001}, {}, "invalid_quantity"),
        ({"sku": "s 1", "quantity": 1}, {}, "validation_failed"),
        ({"sku": "s1\n", "quantity": 1}, {}, "validation_failed"),
        ({"sku": "s1", "quantity": 1, "quantiy": 1}, {}, "validation_failed"),
        ({"sku": "s1", "quantity": 1}, {"ttl_seconds": 10**6}, "ttl_out_of_range"),
        ({"sku": "s1", "quantity": 1}, {"ttl_seconds": 0}, "validation_failed"),
        ({"sku": "s1", "quantity": 1}, {"customer_id": "c|1"}, "validation_failed"),
        ({"sku": "s1", "quantity": 1}, {"customer_id": "c" * 65}, "validation_failed"),
    ],
)
async def test_invalid_carts_are_422(api: Api, line: dict, extra: dict, code: str) -> None:
    body = {"customer_id": "c1", "lines": [line], **extra}
    response = await api.client.post("/v1/reservations", json=body, headers=STOREFRONT)
    assert_problem(response, 422, code)


async def test_too_many_lines_or_none_is_422(api: Api) -> None:
    lines = [{"sku": "s1", "quantity": 1}] * (api.ctx.settings.max_lines_per_cart + 1)
    for bad in (lines, []):
        response = await api.client.post(
            "/v1/reservations", json={"customer_id": "c1", "lines": bad}, headers=STOREFRONT
        )
        assert_problem(response, 422)


# ---- GET /v1/reservations/{id} -------------------------------------------------------------


async def test_get_with_token_or_admin_key(api: Api) -> None:
    rid, headers = await api.held(2)
    mine = await api.client.get(f"/v1/reservations/{rid}", headers=headers)
    assert mine.status_code == 200 and mine.json()["status"] == "held"
    admin = await api.client.get(f"/v1/reservations/{rid}", headers=ADMIN)
    assert admin.status_code == 200 and admin.json()["lines"] == mine.json()["lines"]


async def test_get_unknown_reservation_is_404(api: Api) -> None:
    assert_problem(
        await api.client.get("/v1/reservations/nope", headers=ADMIN), 404, "reservation_not_found"
    )


async def test_a_hold_past_its_deadline_reads_as_expired(api: Api) -> None:
    rid, headers = await api.held(1, ttl_seconds=60)
    api.ctx.engine.clock_offset_ms = HOUR_MS
    response = await api.client.get(f"/v1/reservations/{rid}", headers=headers)
    assert response.json()["status"] == "expired"
    assert (await api.level())["reserved"] == 0


# ---- extend ------------------------------------------------------------------------------


async def test_extend_moves_the_deadline(api: Api) -> None:
    await api.put_sku("s1", max_extensions=1)
    rid, headers = await api.held(1, ttl_seconds=60)
    response = await api.client.post(
        f"/v1/reservations/{rid}/extend", json={"ttl_seconds": 600}, headers=headers
    )
    assert response.status_code == 200, response.text
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert expires - datetime.now(UTC) > timedelta(seconds=500)
    assert response.json()["extensions"] == 1
    again = await api.client.post(f"/v1/reservations/{rid}/extend", headers=headers)
    assert_problem(again, 409, "extension_limit")


async def test_extend_refusals(api: Api) -> None:
    await api.put_sku("s1", max_extensions=5)
    rid, headers = await api.held(1, ttl_seconds=60)
    url = f"/v1/reservations/{rid}/extend"
    assert_problem(
        await api.client.post(url, json={"ttl_seconds": 10**6}, headers=headers),
        422,
        "ttl_out_of_range",
    )
    api.ctx.engine.clock_offset_ms = HOUR_MS
    assert_problem(await api.client.post(url, headers=headers), 410, "reservation_expired")
    assert_problem(
        await api.client.post("/v1/reservations/nope/extend", headers=ADMIN),
        404,
        "reservation_not_found",
    )


# ---- commit ------------------------------------------------------------------------------


async def test_commit_moves_held_to_committed_and_is_safe_to_retry(api: Api) -> None:
    rid, headers = await api.held(2)
    url = f"/v1/reservations/{rid}/commit"
    response = await api.client.post(url, json={"order_id": "o-1"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "committed" and response.json()["order_id"] == "o-1"
    retry = await api.client.post(url, json={"order_id": "o-1"}, headers=headers)
    assert retry.status_code == 200 and retry.json()["status"] == "committed"
    level = await api.level()
    assert (level["reserved"], level["committed"]) == (0, 2)
    other = await api.client.post(url, json={"order_id": "o-2"}, headers=headers)
    assert_problem(other, 409, "idempotency_conflict")


async def test_commit_refusals(api: Api) -> None:
    rid, headers = await api.held(1, ttl_seconds=60)
    url = f"/v1/reservations/{rid}/commit"
    assert_problem(await api.client.post(url, json={}, headers=headers), 422)
    released, released_headers = await api.held(1)
    await api.client.delete(f"/v1/reservations/{released}", headers=released_headers)
    body = assert_problem(
        await api.client.post(
            f"/v1/reservations/{released}/commit", json={"order_id": "o"}, headers=ADMIN
        ),
        409,
        "invalid_state",
    )
    assert body["reservation_status"] == "released" and body["expected"] == "held"
    assert_problem(
        await api.client.post(
            "/v1/reservations/nope/commit", json={"order_id": "o"}, headers=ADMIN
        ),
        404,
        "reservation_not_found",
    )
    api.ctx.engine.clock_offset_ms = HOUR_MS
    expired = await api.client.post(url, json={"order_id": "o-1"}, headers=headers)
    assert_problem(expired, 410, "reservation_expired")


# ---- fulfil ------------------------------------------------------------------------------


async def _committed(api: Api, quantity: int) -> str:
    rid, headers = await api.held(quantity)
    response = await api.client.post(
        f"/v1/reservations/{rid}/commit", json={"order_id": f"o-{rid}"}, headers=headers
    )
    assert response.status_code == 200, response.text
    return rid


async def test_fulfil_all_ships_everything(api: Api) -> None:
    rid = await _committed(api, 3)
    response = await api.client.post(f"/v1/reservations/{rid}/fulfil", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "fulfilled"
    assert response.json()["lines"][0]["allocations"][0]["fulfilled"] == 3
    level = await api.level()
    assert (level["on_hand"], level["committed"], level["available"]) == (7, 0, 7)


async def test_fulfil_per_line_and_over_fulfil(api: Api) -> None:
    rid = await _committed(api, 3)
    url = f"/v1/reservations/{rid}/fulfil"
    part = {"lines": [{"sku": "s1", "quantity": 2}], "fulfilment_id": "f-1"}
    response = await api.client.post(url, json=part, headers=ADMIN)
    assert response.status_code == 200 and response.json()["status"] == "committed"
    retry = await api.client.post(url, json=part, headers=ADMIN)
    assert retry.status_code == 200
    assert (await api.level())["on_hand"] == 8
    too_many = {"lines": [{"sku": "s1", "quantity": 2}]}
    assert_problem(await api.client.post(url, json=too_many, headers=ADMIN), 409, "over_fulfil")


async def test_fulfil_refusals(api: Api) -> None:
    rid, _ = await api.held(1)
    assert_problem(
        await api.client.post(f"/v1/reservations/{rid}/fulfil", headers=ADMIN),
        409,
        "invalid_state",
    )
    assert_problem(
        await api.client.post("/v1/reservations/nope/fulfil", headers=ADMIN),
        404,
        "reservation_not_found",
    )


# ---- DELETE ------------------------------------------------------------------------------


async def test_release_is_204_every_time(api: Api) -> None:
    rid, headers = await api.held(4)
    for _ in range(2):
        response = await api.client.delete(f"/v1/reservations/{rid}", headers=headers)
        assert response.status_code == 204 and response.content == b""
    assert (await api.level())["reserved"] == 0
    got = await api.client.get(f"/v1/reservations/{rid}", headers=headers)
    assert got.json()["status"] == "released"
    unknown = await api.client.delete("/v1/reservations/never-made", headers=ADMIN)
    assert unknown.status_code == 204


async def test_release_of_a_committed_order_gives_the_units_back(api: Api) -> None:
    rid = await _committed(api, 2)
    assert (await api.client.delete(f"/v1/reservations/{rid}", headers=ADMIN)).status_code == 204
    level = await api.level()
    assert (level["committed"], level["available"]) == (0, 10)
