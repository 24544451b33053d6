"""Who may do what: API keys and roles, reservation tokens, rate limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.auth import KeyRing, ReservationTokens
from tests.api_harness import (
    ADMIN,
    ADMIN_KEY,
    RESERVE_LANE,
    STOREFRONT,
    STOREFRONT_KEY,
    Api,
    api_settings,
    assert_problem,
    running_api,
    with_token,
)


@pytest.fixture(**RESERVE_LANE)
async def api(
    request: pytest.FixtureRequest, redis_client: object, redis_url: str
) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url, api_reserve_lane=request.param)) as api:
        await api.put_sku("s1", on_hand=10, max_extensions=3)
        yield api


def admin_calls(rid: str) -> list[tuple[str, str, Any]]:
    """Every admin-only call, with a body that an admin key would get accepted."""
    return [
        ("PUT", "/v1/skus/s1", {"locations": [{"location": "wh-1", "on_hand": 999}]}),
        ("PUT", "/v1/skus/new-sku", {"locations": [{"location": "wh-1", "on_hand": 5}]}),
        (
            "POST",
            "/v1/inventory/s1/adjustments",
            {"location": "wh-1", "delta": 5, "reason": "received"},
        ),
        ("PUT", "/v1/inventory/s1/locations/wh-1", {"on_hand": 50}),
        ("GET", "/v1/inventory/s1/transactions", None),
        ("POST", f"/v1/reservations/{rid}/fulfil", None),
    ]


async def test_a_storefront_key_is_refused_every_admin_call(api: Api) -> None:
    rid, headers = await api.held(2)
    await api.client.post(
        f"/v1/reservations/{rid}/commit", json={"order_id": "o-1"}, headers=headers
    )
    before = await api.level()
    for method, url, body in admin_calls(rid):
        for who in (STOREFRONT, headers):  # its own cart's token does not make it an admin
            response = await api.client.request(method, url, json=body, headers=who)
            assert_problem(response, 403, "forbidden")
    assert await api.level() == before
    missing = await api.client.get("/v1/inventory/new-sku", headers=ADMIN)
    assert_problem(missing, 404, "unknown_sku")


async def test_an_admin_key_may_do_everything(api: Api) -> None:
    rid, _ = await api.held(2)
    await api.client.post(f"/v1/reservations/{rid}/commit", json={"order_id": "o"}, headers=ADMIN)
    for method, url, body in admin_calls(rid):
        response = await api.client.request(method, url, json=body, headers=ADMIN)
        # The ledger answers 503 here: this app has no database (tested elsewhere).
        assert response.status_code in (200, 201, 503), (url, response.text)
    reserve = await api.reserve(1, headers=ADMIN)
    assert reserve.status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": ADMIN_KEY},
        {"Authorization": f"Bearer {ADMIN_KEY}x"},
    ],
    ids=["none", "unknown", "basic-scheme", "no-scheme", "key-plus-one"],
)
async def test_no_or_unknown_key_is_401(api: Api, headers: dict[str, str]) -> None:
    rid, _ = await api.held(1)
    calls = [
        (
            "POST",
            "/v1/reservations",
            {"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 1}]},
        ),
        ("GET", f"/v1/reservations/{rid}", None),
        ("POST", f"/v1/reservations/{rid}/extend", None),
        ("POST", f"/v1/reservations/{rid}/commit", {"order_id": "o"}),
        ("DELETE", f"/v1/reservations/{rid}", None),
        ("GET", "/v1/inventory/s1", None),
    ] + admin_calls(rid)
    for method, url, body in calls:
        response = await api.client.request(method, url, json=body, headers=headers)
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await api.level())["reserved"] == 1


async def test_a_token_for_cart_a_cannot_touch_cart_b(api: Api) -> None:
    a, a_headers = await api.held(1, customer="alice")
    b, b_headers = await api.held(1, customer="bob")
    for method, suffix, body in [
        ("GET", "", None),
        ("POST", "/extend", None),
        ("POST", "/commit", {"order_id": "o-stolen"}),
        ("DELETE", "", None),
    ]:
        response = await api.client.request(
            method, f"/v1/reservations/{b}{suffix}", json=body, headers=a_headers
        )
        assert_problem(response, 403, "forbidden")
    mine = await api.client.get(f"/v1/reservations/{b}", headers=b_headers)
    assert mine.json()["status"] == "held" and mine.json()["extensions"] == 0
    assert (await api.level())["reserved"] == 2


@pytest.mark.parametrize("token", [None, "", "garbage", "A" * 43])
async def test_a_missing_or_forged_token_is_403(api: Api, token: str | None) -> None:
    rid, _ = await api.held(1)
    headers = STOREFRONT if token is None else with_token(token)
    assert_problem(await api.client.get(f"/v1/reservations/{rid}", headers=headers), 403)


RESERVATION_CALLS = [
    ("GET", "", None),
    ("POST", "/extend", None),
    ("POST", "/commit", {"order_id": "o-1"}),
    ("DELETE", "", None),
]
CALL_IDS = ["get", "extend", "commit", "release"]


@pytest.mark.parametrize(("method", "suffix", "body"), RESERVATION_CALLS, ids=CALL_IDS)
async def test_each_reservation_call_asks_a_storefront_key_for_the_token(
    api: Api, method: str, suffix: str, body: Any
) -> None:
    rid, _ = await api.held(1)
    url = f"/v1/reservations/{rid}{suffix}"
    missing = await api.client.request(method, url, json=body, headers=STOREFRONT)
    detail = assert_problem(missing, 403, "forbidden")["detail"]
    assert detail == "X-Reservation-Token is required for this reservation"
    wrong = await api.client.request(method, url, json=body, headers=with_token("A" * 43))
    detail = assert_problem(wrong, 403, "forbidden")["detail"]
    assert detail == (
        "the reservation token does not match this reservation (was it issued by a server with "
        "another FLASHSALE_TOKEN_SECRET?)"
    )
    untouched = await api.client.get(f"/v1/reservations/{rid}", headers=ADMIN)
    assert untouched.json()["status"] == "held" and untouched.json()["extensions"] == 0
    assert (await api.level())["reserved"] == 1
    admin = await api.client.request(method, url, json=body, headers=ADMIN)  # no token needed
    assert admin.status_code == (204 if method == "DELETE" else 200), admin.text


@pytest.mark.parametrize(("method", "suffix", "body"), RESERVATION_CALLS, ids=CALL_IDS)
async def test_a_malformed_id_or_token_is_422_before_the_token_is_checked(
    api: Api, method: str, suffix: str, body: Any
) -> None:
    rid, headers = await api.held(1)
    bad_id = await api.client.request(
        method, f"/v1/reservations/not%20an%20id{suffix}", json=body, headers=STOREFRONT
    )
    assert_problem(bad_id, 422, "validation_failed")
    too_long = await api.client.request(
        method, f"/v1/reservations/{rid}{suffix}", json=body, headers=with_token("A" * 129)
    )
    assert_problem(too_long, 422, "validation_failed")
    assert (await api.level())["reserved"] == 1


@pytest.mark.parametrize(
    ("suffix", "body"),
    [("/extend", {"ttl_seconds": "x"}), ("/commit", {})],
    ids=["extend", "commit"],
)
async def test_the_token_is_checked_before_the_body_as_the_role_is(
    api: Api, suffix: str, body: Any
) -> None:
    """A caller who may not act on the cart hears 403, not what is wrong with its body."""
    rid, headers = await api.held(1)
    url = f"/v1/reservations/{rid}{suffix}"
    for who in (STOREFRONT, with_token("A" * 43)):
        assert_problem(await api.client.post(url, json=body, headers=who), 403, "forbidden")
    for who in (headers, ADMIN):
        assert_problem(await api.client.post(url, json=body, headers=who), 422)
    fulfil = await api.client.post(
        f"/v1/reservations/{rid}/fulfil", json={"lines": "x"}, headers=headers
    )
    assert_problem(fulfil, 403, "forbidden")


async def test_a_reservation_call_counts_once_against_the_key_rate_limit(
    redis_client: object, redis_url: str
) -> None:
    async with running_api(api_settings(redis_url, rate_limit_per_key=3)) as api:
        await api.put_sku("s1", on_hand=10)  # the admin key: a counter of its own
        rid, headers = await api.held(1)
        for _ in range(2):
            response = await api.client.get(f"/v1/reservations/{rid}", headers=headers)
            assert response.status_code == 200, response.text
        refused = await api.client.get(f"/v1/reservations/{rid}", headers=headers)
        assert_problem(refused, 429, "rate_limited")


async def test_guessed_ids_get_403_not_404_and_learn_nothing(api: Api) -> None:
    """Without a token the answer is the same whether the id exists or not."""
    rid, _ = await api.held(1)
    real = await api.client.get(f"/v1/reservations/{rid}", headers=STOREFRONT)
    fake = await api.client.get("/v1/reservations/no-such-id", headers=STOREFRONT)
    assert real.status_code == fake.status_code == 403
    assert real.json()["detail"] == fake.json()["detail"]


async def test_customer_rate_limit_is_429_with_retry_after(
    redis_client: object, redis_url: str
) -> None:
    settings = api_settings(redis_url, rate_limit_per_customer=2, rate_limit_window_seconds=30)
    async with running_api(settings) as api:
        await api.put_sku("s1", on_hand=10)
        for _ in range(2):
            assert (await api.reserve(1)).status_code == 201
        refused = await api.reserve(1)
        body = assert_problem(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        assert body["limit"] == 2
        assert (await api.reserve(1, customer="c2")).status_code == 201
        assert (await api.level())["reserved"] == 3


async def test_sold_out_refusals_cost_redis_nothing_and_are_not_rationed(
    redis_client: Any, redis_url: str
) -> None:
    settings = api_settings(
        redis_url,
        rate_limit_per_customer=2,
        rate_limit_window_seconds=30,
        sold_out_recheck_ms=10_000,  # no slow machine outlasts it: the window is not the test
    )
    async with running_api(settings) as api:
        await api.put_sku("s1", on_hand=1)
        assert (await api.reserve(1, customer="winner")).status_code == 201
        assert_problem(await api.reserve(1), 409, "insufficient_stock")  # Redis says sold out
        await redis_client.info("commandstats")  # so INFO's own line exists in both reads
        before = await redis_client.info("commandstats")
        for _ in range(5):  # past the customer's limit of 2, still the true answer
            assert_problem(await api.reserve(1), 409, "insufficient_stock")
        # A client's mistake is still named as such, not hidden behind "sold out".
        assert_problem(await api.reserve(5000), 422, "invalid_quantity")
        after = await redis_client.info("commandstats")
        after["cmdstat_info"]["calls"] -= 1
        # Not a script, not a rate-limit counter: no command at all.
        assert {k: v["calls"] for k, v in after.items()} == {
            k: v["calls"] for k, v in before.items()
        }


async def test_key_rate_limit_counts_each_key_apart(redis_client: object, redis_url: str) -> None:
    settings = api_settings(redis_url, rate_limit_per_key=3)
    async with running_api(settings) as api:
        for _ in range(3):
            response = await api.client.get("/v1/inventory/nope", headers=STOREFRONT)
            assert response.status_code == 404
        refused = await api.client.get("/v1/inventory/nope", headers=STOREFRONT)
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1
        assert (await api.client.get("/v1/inventory/nope", headers=ADMIN)).status_code == 404


async def test_rate_limit_counters_expire_with_their_window(
    redis_client: Any, redis_url: str
) -> None:
    settings = api_settings(redis_url, rate_limit_per_key=100, rate_limit_window_seconds=7)
    async with running_api(settings) as api:
        await api.client.get("/v1/inventory/nope", headers=STOREFRONT)
    (key,) = await redis_client.keys("rl:*")
    assert STOREFRONT_KEY not in key  # the key names a digest, never the API key itself
    assert 0 < await redis_client.pttl(key) <= 8_000


def test_key_ring_keeps_digests_only_and_admin_wins() -> None:
    ring = KeyRing(admin_keys=["both", "adm"], storefront_keys=["both", "sf"])
    assert ring.identify("adm").role == "admin"  # type: ignore[union-attr]
    assert ring.identify("sf").role == "storefront"  # type: ignore[union-attr]
    assert ring.identify("both").role == "admin"  # type: ignore[union-attr]
    assert ring.identify("nope") is None and ring.identify("") is None
    stored = [digest for digest, _ in ring._entries]
    assert len(stored) == 3 and all(len(digest) == 32 for digest in stored)  # SHA-256 only
    assert not {b"adm", b"sf", b"both"} & set(stored)


def test_reservation_tokens_are_bound_to_the_id_and_the_secret() -> None:
    tokens = ReservationTokens("secret")
    token = tokens.issue("r-1")
    assert tokens.verify("r-1", token)
    assert not tokens.verify("r-2", token)
    assert not ReservationTokens("other").verify("r-1", token)
    assert tokens.issue("r-1") == token and "=" not in token
