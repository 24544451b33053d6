"""Routes that take a JSON body answer 415 to any other body, and accept every JSON media type."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

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

RESERVE = json.dumps({"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 1}]})
SKU = json.dumps({"locations": [{"location": "wh-1", "on_hand": 5}]})


@pytest.fixture(**RESERVE_LANE)
async def api(
    request: pytest.FixtureRequest, redis_client: object, redis_url: str
) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url, api_reserve_lane=request.param)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


NOT_JSON = [
    pytest.param({"Content-Type": "text/plain"}, RESERVE, id="text-plain"),
    pytest.param(
        {"Content-Type": "application/x-www-form-urlencoded"},
        "customer_id=c1&lines=s1",
        id="form",
    ),
    pytest.param(
        {"Content-Type": "multipart/form-data; boundary=b"},
        '--b\r\nContent-Disposition: form-data; name="customer_id"\r\n\r\nc1\r\n--b--\r\n',
        id="multipart",
    ),
    pytest.param({}, RESERVE, id="no-content-type"),
    pytest.param({"Content-Type": "application/xml"}, "<reserve/>", id="xml"),
    pytest.param({"Content-Type": "application/jsonx"}, RESERVE, id="json-lookalike"),
]


@pytest.mark.parametrize(("headers", "content"), NOT_JSON)
async def test_a_body_that_is_not_json_is_415_naming_application_json(
    api: Api, headers: dict[str, str], content: str
) -> None:
    response = await api.client.post(
        "/v1/reservations", content=content, headers={**STOREFRONT, **headers}
    )
    body = assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in body["detail"]
    assert (await api.level())["reserved"] == 0


@pytest.mark.parametrize(("headers", "content"), NOT_JSON)
async def test_put_sku_with_a_body_that_is_not_json_is_415(
    api: Api, headers: dict[str, str], content: str
) -> None:
    response = await api.client.put("/v1/skus/s2", content=content, headers={**ADMIN, **headers})
    assert_problem(response, 415, "unsupported_media_type")
    assert (await api.client.get("/v1/inventory/s2", headers=STOREFRONT)).status_code == 404


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.flashsale+json",
        "application/merge-patch+json; charset=utf-8",
    ],
)
async def test_every_json_media_type_is_accepted(api: Api, content_type: str) -> None:
    headers = {"Content-Type": content_type}
    response = await api.client.post(
        "/v1/reservations", content=RESERVE, headers={**STOREFRONT, **headers}
    )
    assert response.status_code == 201, response.text
    response = await api.client.put("/v1/skus/s2", content=SKU, headers={**ADMIN, **headers})
    assert response.status_code == 201, response.text


async def test_routes_without_a_body_and_empty_optional_bodies_are_not_checked(api: Api) -> None:
    rid, headers = await api.held(1)
    # extend's body is optional: none at all, with or without a content type, is fine.
    response = await api.client.post(f"/v1/reservations/{rid}/extend", headers=headers)
    assert response.status_code != 415, response.text
    response = await api.client.post(
        f"/v1/reservations/{rid}/extend", headers={**headers, "Content-Type": "text/plain"}
    )
    assert response.status_code != 415, response.text
    # A route that takes no body at all ignores a stray one, as before.
    response = await api.client.request(
        "GET", "/v1/inventory/s1", content="x", headers={**STOREFRONT, "Content-Type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    response = await api.client.request(
        "DELETE", f"/v1/reservations/{rid}", content="x", headers={**headers, "Content-Type": "x/y"}
    )
    assert response.status_code == 204, response.text


async def test_the_openapi_document_lists_415_where_a_body_is_taken(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    assert "415" in paths["/v1/reservations"]["post"]["responses"]
    assert "415" in paths["/v1/skus/{sku}"]["put"]["responses"]
    assert "415" in paths["/v1/reservations/{reservation_id}/extend"]["post"]["responses"]
    assert "415" not in paths["/v1/inventory/{sku}"]["get"]["responses"]
    assert "415" not in paths["/healthz"]["get"]["responses"]
