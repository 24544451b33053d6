"""Problem titles written as titles, and a SKU schema that says what an omitted member does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.problems import TITLES, title
from engine.errors import ERRORS_BY_CODE
from tests.api_harness import ADMIN, Api, api_settings, assert_problem, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


def test_every_code_has_a_written_title() -> None:
    assert set(ERRORS_BY_CODE) <= set(TITLES)
    assert title("ttl_out_of_range") == "TTL out of range"
    assert title("unknown_sku") == "Unknown SKU"


async def test_problems_carry_the_written_title(api: Api) -> None:
    body = assert_problem(await api.reserve(1, sku="nope"), 404, "unknown_sku")
    assert body["title"] == "Unknown SKU"
    response = await api.client.get("/v1/reservations/nope", headers=ADMIN)
    body = assert_problem(response, 404, "reservation_not_found")
    assert body["title"] == "Reservation not found"


async def test_the_sku_schema_shows_no_default_for_members_kept_when_omitted(api: Api) -> None:
    schemas = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("SkuIn", "LocationIn"):
        for member, schema in schemas[name]["properties"].items():
            assert "default" not in schema, (name, member, schema)
            if member != "location":
                assert "Omitted: keep the current value" in schema["description"], member
    # The behaviour stays: an omitted member keeps what the SKU has.
    await api.put_sku("s1", on_hand=10, purchase_limit=2, max_extensions=1)
    response = await api.client.put("/v1/skus/s1", json={"max_extensions": 3}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert (response.json()["purchase_limit"], response.json()["max_extensions"]) == (2, 3)
