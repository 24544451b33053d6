"""/v1/webhooks: endpoints as data (admin only), their secrets, test messages and deliveries.

The API alone, on a migrated Postgres; tests/test_webhooks_delivery.py runs the dispatcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from api.readiness import READINESS_TTL_SECONDS
from sync_worker.migrations import upgrade
from tests.api_harness import ADMIN, STOREFRONT, Api, api_settings, assert_problem, running_api
from tests.webhooks_support import ALL_EVENTS, insert_ledger_rows

URL = "https://shop.example.com/hooks"


@pytest.fixture
async def api(redis_client: object, redis_url: str, pg_database_url: str) -> AsyncIterator[Api]:
    upgrade(pg_database_url)
    async with running_api(api_settings(redis_url, pg_database_url)) as api:
        yield api


async def create(api: Api, **body: object) -> dict[str, object]:
    sent = {"url": URL, "events": ["inventory.out_of_stock"], **body}
    response = await api.client.post("/v1/webhooks", json=sent, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_an_endpoint_is_created_read_changed_and_deleted(api: Api) -> None:
    created = await create(api, events=ALL_EVENTS, description="storefront")
    endpoint_id = str(created["id"])
    assert str(created["secret"]).startswith("whsec_")
    assert created["enabled"] is True and created["events"] == sorted(ALL_EVENTS)

    listed = (await api.client.get("/v1/webhooks", headers=ADMIN)).json()["webhooks"]
    assert [w["id"] for w in listed] == [endpoint_id]
    assert "secret" not in listed[0]  # shown once, at creation
    one = await api.client.get(f"/v1/webhooks/{endpoint_id}", headers=ADMIN)
    assert one.status_code == 200 and "secret" not in one.json()

    changed = await api.client.patch(
        f"/v1/webhooks/{endpoint_id}",
        json={"events": ["inventory.low_stock"], "enabled": False},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["events"] == ["inventory.low_stock"] and body["description"] == "storefront"
    assert body["enabled"] is False and body["disabled_reason"] == "disabled by an operator"

    enabled = await api.client.patch(
        f"/v1/webhooks/{endpoint_id}", json={"enabled": True}, headers=ADMIN
    )
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None

    deleted = await api.client.delete(f"/v1/webhooks/{endpoint_id}", headers=ADMIN)
    assert deleted.status_code == 204
    gone = await api.client.get(f"/v1/webhooks/{endpoint_id}", headers=ADMIN)
    assert_problem(gone, 404, "webhook_not_found")


@pytest.mark.parametrize(
    "url",
    ["ftp://shop.example.com/hooks", "javascript:alert(1)", "file:///etc/passwd", "shop.example"],
)
async def test_only_http_urls_are_accepted(api: Api, url: str) -> None:
    response = await api.client.post(
        "/v1/webhooks", json={"url": url, "events": ["inventory.low_stock"]}, headers=ADMIN
    )
    assert_problem(response, 422)
    endpoint_id = (await create(api))["id"]
    patched = await api.client.patch(
        f"/v1/webhooks/{endpoint_id}", json={"url": url}, headers=ADMIN
    )
    assert_problem(patched, 422)


async def test_unknown_event_types_and_empty_subscriptions_are_refused(api: Api) -> None:
    for events in (["inventory.sold"], [], "inventory.low_stock"):
        response = await api.client.post(
            "/v1/webhooks", json={"url": URL, "events": events}, headers=ADMIN
        )
        assert_problem(response, 422)


async def test_webhooks_need_an_admin_key(api: Api) -> None:
    assert_problem(await api.client.get("/v1/webhooks"), 401, "unauthenticated")
    assert_problem(await api.client.get("/v1/webhooks", headers=STOREFRONT), 403, "forbidden")
    response = await api.client.post(
        "/v1/webhooks", json={"url": URL, "events": ["inventory.low_stock"]}, headers=STOREFRONT
    )
    assert_problem(response, 403, "forbidden")


async def test_unknown_and_malformed_ids_are_problems(api: Api) -> None:
    unknown = "ep_" + "0" * 24
    for method, path in [
        ("GET", f"/v1/webhooks/{unknown}"),
        ("DELETE", f"/v1/webhooks/{unknown}"),
        ("POST", f"/v1/webhooks/{unknown}/rotate-secret"),
        ("POST", f"/v1/webhooks/{unknown}/test"),
        ("GET", f"/v1/webhooks/{unknown}/deliveries"),
    ]:
        response = await api.client.request(method, path, headers=ADMIN)
        assert_problem(response, 404, "webhook_not_found")
    assert_problem(await api.client.get("/v1/webhooks/nope", headers=ADMIN), 422)
    endpoint_id = (await create(api))["id"]
    retry = await api.client.post(f"/v1/webhooks/{endpoint_id}/deliveries/99/retry", headers=ADMIN)
    assert_problem(retry, 404, "delivery_not_found")


async def test_rotating_the_secret_shows_a_new_one_once(api: Api) -> None:
    created = await create(api)
    rotated = await api.client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=ADMIN)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    assert body["previous_secret_expires_at"]


async def test_a_test_message_is_queued_listed_and_retried(api: Api) -> None:
    endpoint_id = (await create(api))["id"]
    queued = []
    for _ in range(3):
        response = await api.client.post(f"/v1/webhooks/{endpoint_id}/test", headers=ADMIN)
        assert response.status_code == 202, response.text
        queued.append(response.json())
    assert queued[0]["status"] == "pending" and queued[0]["event_type"] == "webhook.test"
    assert queued[0]["message_id"].startswith("msg_")

    seen = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await api.client.get(
            f"/v1/webhooks/{endpoint_id}/deliveries", params=params, headers=ADMIN
        )
        assert page.status_code == 200, page.text
        seen += [d["id"] for d in page.json()["deliveries"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [d["id"] for d in reversed(queued)]  # newest first

    failed_only = await api.client.get(
        f"/v1/webhooks/{endpoint_id}/deliveries?status=failed", headers=ADMIN
    )
    assert failed_only.json()["deliveries"] == []
    retried = await api.client.post(
        f"/v1/webhooks/{endpoint_id}/deliveries/{queued[0]['id']}/retry", headers=ADMIN
    )
    assert retried.status_code == 202, retried.text
    assert retried.json()["message_id"] == queued[0]["message_id"]  # the same webhook-id


async def test_readyz_shows_the_dispatchers_lag_without_depending_on_it(
    api: Api, pg_database_url: str
) -> None:
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["webhooks_lag_seconds"] == 0.0
    insert_ledger_rows(pg_database_url, [("committed", "s1")])  # no dispatcher runs here
    await asyncio.sleep(READINESS_TTL_SECONDS + 0.05)  # past the shared verdict's lifetime
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["webhooks_lag_seconds"] > 0


async def test_without_a_database_webhooks_answer_503(redis_client: object, redis_url: str) -> None:
    async with running_api(api_settings(redis_url, None)) as api:
        response = await api.client.get("/v1/webhooks", headers=ADMIN)
        assert_problem(response, 503, "webhooks_unavailable")


async def test_every_webhook_operation_is_documented_with_examples(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        if path.startswith("/v1/webhooks")
        for method, operation in item.items()
    }
    assert len(operations) == 9
    for (method, path), operation in operations.items():
        assert operation.get("description") or operation.get("summary"), (method, path)
        if "requestBody" in operation:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert schemas[ref.rsplit("/", 1)[1]].get("examples"), (method, path)
        ok = [s for s in operation["responses"] if s.startswith("2")]
        assert ok, (method, path)
        for status in ok:
            content = operation["responses"][status].get("content")
            if content is None:
                continue  # 204
            ref = content["application/json"]["schema"]["$ref"]
            assert schemas[ref.rsplit("/", 1)[1]].get("examples"), (method, path, status)
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"].get("examples"), (method, path)
