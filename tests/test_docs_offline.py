"""/docs and /redoc load every asset from this server: they render with no internet."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tests.api_harness import Api, api_settings, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        yield api


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_name_no_external_url_and_their_assets_are_served(
    api: Api, page: str
) -> None:
    response = await api.client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"https?://|//cdn|fonts\.googleapis", html), html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/docs/static/"), asset
        served = await api.client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100


async def test_the_openapi_document_lists_the_sku_reads_and_not_the_console(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/v1/skus"]
    assert "get" in paths["/v1/skus/{sku}"] and "put" in paths["/v1/skus/{sku}"]
    assert not [path for path in paths if path.startswith(("/console", "/docs", "/redoc"))]
