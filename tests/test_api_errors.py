"""Every failure is application/problem+json, and a client's mistake is never a 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api.problems import ENGINE_STATUS, RETRY_AFTER, STATUS_BY_ERROR
from engine.errors import ERRORS_BY_CODE, UnknownSku
from tests.api_harness import (
    ADMIN,
    RESERVE_LANE,
    STOREFRONT,
    Api,
    api_settings,
    assert_problem,
    running_api,
)


@pytest.fixture(**RESERVE_LANE)
async def api(
    request: pytest.FixtureRequest, redis_client: object, redis_url: str
) -> AsyncIterator[Api]:
    async with running_api(
        api_settings(redis_url, api_reserve_lane=request.param, max_body_bytes=2048)
    ) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


def test_every_engine_error_code_has_a_client_status() -> None:
    assert set(ERRORS_BY_CODE) == set(ENGINE_STATUS)
    # 503 only for a refusal that lifts by itself, with the Retry-After it is answered with.
    assert all(
        400 <= status < 500 or (status == 503 and cls in RETRY_AFTER)
        for cls, status in STATUS_BY_ERROR.items()
    )


async def test_a_refusal_carries_the_engine_details_as_members(api: Api) -> None:
    body = assert_problem(await api.reserve(11), 409, "insufficient_stock")
    assert body["type"] == "urn:flashsale:problem:insufficient_stock"
    assert body["title"] == "Insufficient stock"
    assert "10" in body["detail"] and "11" in body["detail"]
    assert {"sku", "requested", "available"} <= body.keys()


async def test_malformed_json_is_422(api: Api) -> None:
    response = await api.client.post(
        "/v1/reservations",
        content=b'{"customer_id": "c1", "lines": [',
        headers={**STOREFRONT, "Content-Type": "application/json"},
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"customer_id": "c1"}', "text/plain"),
        (b"customer_id=c1", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
)
async def test_a_body_that_is_not_the_expected_json_is_4xx(
    api: Api, content: bytes, content_type: str
) -> None:
    response = await api.client.post(
        "/v1/reservations", content=content, headers={**STOREFRONT, "Content-Type": content_type}
    )
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code)


async def test_a_validation_problem_lists_every_error(api: Api) -> None:
    response = await api.client.post(
        "/v1/reservations", json={"lines": [{"sku": "", "quantity": -1}]}, headers=STOREFRONT
    )
    body = assert_problem(response, 422, "validation_failed")
    locations = {tuple(error["loc"]) for error in body["errors"]}
    assert ("body", "customer_id") in locations
    assert ("body", "lines", 0, "quantity") in locations
    assert "more" in body["detail"]


async def test_a_body_over_the_limit_is_413_declared_or_streamed(api: Api) -> None:
    big = b'{"customer_id": "' + b"x" * 4096 + b'"}'
    declared = await api.client.post(
        "/v1/reservations", content=big, headers={**STOREFRONT, "Content-Type": "application/json"}
    )
    body = assert_problem(declared, 413, "body_too_large")
    assert body["max_bytes"] == 2048

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(8):
            yield b" " * 512

    streamed = await api.client.post(
        "/v1/reservations",
        content=chunks(),
        headers={**STOREFRONT, "Content-Type": "application/json"},
    )
    assert_problem(streamed, 413, "body_too_large")


async def test_an_unknown_route_is_a_404_problem(api: Api) -> None:
    for url in ("/nope", "/v1/reservation", "/v1/inventory/s1/extra/path", "/v1/reservations/"):
        assert_problem(await api.client.get(url, headers=ADMIN), 404, "not_found")


async def test_a_wrong_method_is_405_with_every_allowed_method(api: Api) -> None:
    response = await api.client.patch("/v1/skus/s1", headers=ADMIN)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD, PUT"
    # GET and DELETE of one path are two routes: Allow must name both.
    response = await api.client.put("/v1/reservations/r1", headers=ADMIN)
    assert_problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET, HEAD"


async def test_a_body_that_is_not_utf8_is_a_400_problem(api: Api) -> None:
    response = await api.client.post(
        "/v1/reservations/r1/commit",
        content=b"\x16\xff\xfe\x00",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_body")


async def test_numbers_follow_json_not_python(api: Api) -> None:
    """2.0 is the integer 2, as JSON Schema says; "2", true and 2.5 are not integers."""
    accepted = await api.client.post(
        "/v1/reservations",
        json={"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 2.0}]},
        headers=STOREFRONT,
    )
    assert accepted.status_code == 201 and accepted.json()["lines"][0]["quantity"] == 2
    for bad in ("2", True, 2.5):
        response = await api.client.post(
            "/v1/reservations",
            json={"customer_id": "c1", "lines": [{"sku": "s1", "quantity": bad}]},
            headers=STOREFRONT,
        )
        assert_problem(response, 422, "validation_failed")


@pytest.mark.parametrize(
    "body",
    [
        {"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 46625427761108209679466496}]},
        {"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 1}], "ttl_seconds": 10**30},
    ],
)
async def test_integers_beyond_any_bound_are_422_not_500(api: Api, body: object) -> None:
    """Found by schemathesis: echoing a 26-digit quantity made the refusal unwritable (500)."""
    response = await api.client.post("/v1/reservations", json=body, headers=STOREFRONT)
    assert_problem(response, 422, "validation_failed")


@pytest.mark.parametrize("when", [0, "0", "2030-01-01T00:00:00", "2030-01-01", "soon"])
async def test_times_are_rfc3339_strings_with_an_offset(api: Api, when: object) -> None:
    response = await api.client.put("/v1/skus/s1", json={"sale_starts_at": when}, headers=ADMIN)
    assert_problem(response, 422, "validation_failed")


async def test_redis_down_is_a_503_problem_with_retry_after(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: Any, **kwargs: Any) -> None:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(api.ctx.engine, "inventory", down)
    response = await api.client.get("/v1/inventory/s1", headers=STOREFRONT)
    assert_problem(response, 503, "redis_unavailable")
    assert response.headers["retry-after"] == "1"


async def test_a_bug_is_a_500_problem_without_internals(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(api.ctx.engine, "inventory", broken)
    # As uvicorn does: the app re-raises after answering (for logs); the client gets the answer.
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/v1/inventory/s1", headers=STOREFRONT)
    body = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text and body["detail"]


async def test_engine_checks_raised_before_redis_are_problems_too(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise UnknownSku(sku="s1")

    monkeypatch.setattr(api.ctx.engine, "inventory", refuse)
    body = assert_problem(
        await api.client.get("/v1/inventory/s1", headers=STOREFRONT), 404, "unknown_sku"
    )
    assert body["sku"] == "s1" and body["detail"] == "no SKU s1"
