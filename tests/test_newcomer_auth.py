"""A caller is told what is wrong with its request: a missing Bearer scheme, an id off the rule."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.validation import ID_RULE
from tests.api_harness import (
    ADMIN_KEY,
    STOREFRONT,
    Api,
    api_settings,
    assert_problem,
    running_api,
)


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


async def test_a_key_without_the_bearer_scheme_is_told_the_scheme_is_missing(api: Api) -> None:
    response = await api.client.get("/v1/inventory/s1", headers={"Authorization": ADMIN_KEY})
    body = assert_problem(response, 401, "unauthenticated")
    assert "Bearer scheme" in body["detail"] and "required" not in body["detail"]
    body = assert_problem(await api.client.get("/v1/inventory/s1"), 401, "unauthenticated")
    assert body["detail"].startswith("an API key is required")


async def test_an_id_off_the_pattern_is_told_the_rule_in_words(api: Api) -> None:
    body = assert_problem(
        await api.client.get("/v1/inventory/bad%20sku", headers=STOREFRONT),
        422,
        "validation_failed",
    )
    assert body["detail"] == f"path.sku: must be {ID_RULE}"
    body = assert_problem(await api.reserve(1, sku="-dash"), 422, "validation_failed")
    assert body["errors"][0]["msg"] == f"must be {ID_RULE}"
    assert "letters, digits or _.:@+-" in ID_RULE and "64" in ID_RULE
