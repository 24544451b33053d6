"""A reservation token is bound to one incarnation of its id: once the id has been reused (after
the retention window), the old owner's token opens nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from api.auth import ReservationTokens
from engine import CartLine
from tests.api_harness import ADMIN, api_settings, assert_problem, running_api, with_token
from tests.engine_support import make_engine, sku


async def test_an_old_owners_token_opens_nothing_once_the_id_is_reused(
    redis_client: Any, redis_url: str
) -> None:
    async with running_api(api_settings(redis_url, retention_seconds=1)) as api:
        await api.put_sku("s1", on_hand=5)
        first = await api.reserve(1, customer="c1", key="x-1")
        assert first.status_code == 201, first.text
        old = with_token(first.json()["reservation_token"])
        assert (await api.client.delete("/v1/reservations/x-1", headers=old)).status_code == 204
        for _ in range(100):  # the released reservation leaves Redis after its retention
            if (await api.client.get("/v1/reservations/x-1", headers=ADMIN)).status_code == 404:
                break
            await asyncio.sleep(0.1)
        second = await api.reserve(2, customer="c2", key="x-1")
        assert second.status_code == 201, second.text
        new = with_token(second.json()["reservation_token"])
        assert new != old

        for method, path, body in (
            ("GET", "/v1/reservations/x-1", None),
            ("POST", "/v1/reservations/x-1/extend", {"ttl_seconds": 60}),
            ("POST", "/v1/reservations/x-1/commit", {"order_id": "o-1"}),
            ("DELETE", "/v1/reservations/x-1", None),
        ):
            refused = await api.client.request(method, path, json=body, headers=old)
            assert_problem(refused, 403, "forbidden")
        assert (await api.level())["reserved"] == 2  # the new owner's cart is untouched

        mine = await api.client.get("/v1/reservations/x-1", headers=new)
        assert mine.status_code == 200, mine.text
        assert (mine.json()["customer_id"], mine.json()["status"]) == ("c2", "held")
        assert mine.json()["reservation_token"] == second.json()["reservation_token"]
        assert (await api.client.delete("/v1/reservations/x-1", headers=new)).status_code == 204
        assert (await api.level())["reserved"] == 0


async def test_a_token_still_opens_its_reservation_while_it_exists(
    redis_client: Any, redis_url: str
) -> None:
    async with running_api(api_settings(redis_url)) as api:
        await api.put_sku("s1", on_hand=5)
        first = await api.reserve(1, key="y-1")
        token = first.json()["reservation_token"]
        replay = await api.reserve(1, key="y-1")  # a retry gets the same token back
        assert replay.status_code == 200 and replay.json()["reservation_token"] == token
        extended = await api.client.post(
            "/v1/reservations/y-1/extend", json={"ttl_seconds": 60}, headers=with_token(token)
        )
        assert extended.status_code in (200, 409), extended.text  # 409: no extensions allowed
        assert (
            await api.client.delete("/v1/reservations/y-1", headers=with_token(token))
        ).status_code == 204
        # Released but within retention: still its owner's to read; unknown ids stay 403.
        gone = await api.client.get("/v1/reservations/y-1", headers=with_token(token))
        assert gone.status_code == 200 and gone.json()["status"] == "released"
        assert_problem(
            await api.client.get("/v1/reservations/y-2", headers=with_token(token)),
            403,
            "forbidden",
        )


async def test_each_incarnation_of_an_id_has_its_own_and_a_replay_keeps_it(
    redis_client: Any, redis_url: str
) -> None:
    engine = await make_engine(redis_url, retention_seconds=1)
    try:
        await engine.configure_sku("tee", sku(5))
        first = await engine.reserve("r1", "c1", [CartLine("tee", 1)])
        assert first.incarnation
        replay = await engine.reserve("r1", "c1", [CartLine("tee", 1)])
        assert replay.incarnation == first.incarnation
        assert (await engine.get_reservation("r1")).incarnation == first.incarnation
        await engine.release("r1")
        while await engine.redis.exists(engine.keys.for_sku("tee").reservation("r1")):
            await asyncio.sleep(0.1)
        again = await engine.reserve("r1", "c2", [CartLine("tee", 1)])
        assert again.incarnation and again.incarnation != first.incarnation
    finally:
        await engine.aclose()


def test_a_token_names_its_incarnation_and_cannot_be_moved_to_another() -> None:
    tokens = ReservationTokens("secret")
    token = tokens.issue("r-1", "a1b2")
    assert tokens.incarnation_of("r-1", token) == "a1b2"
    assert tokens.incarnation_of("r-2", token) is None
    forged = "ffff" + token[4:]  # another incarnation with this one's MAC
    assert tokens.incarnation_of("r-1", forged) is None
    assert ReservationTokens("other").incarnation_of("r-1", token) is None
    # A reservation made before incarnations existed keeps the token it was given.
    legacy = tokens.issue("r-1")
    assert tokens.incarnation_of("r-1", legacy) == ""
    assert tokens.incarnation_of("r-1", None) is None
    assert tokens.incarnation_of("r-1", "") is None


async def test_a_storefront_commit_is_one_script_call(redis_client: Any, redis_url: str) -> None:
    # The token's incarnation is checked by the commit script itself: no read of the
    # reservation before it (once one per partition), and no window between the two.
    async with running_api(api_settings(redis_url, partitions=4)) as api:
        await api.put_sku("s1", on_hand=5)
        held = await api.reserve(1, key="z-1")
        token = with_token(held.json()["reservation_token"])
        await redis_client.config_resetstat()
        done = await api.client.post(
            "/v1/reservations/z-1/commit", json={"order_id": "o-1"}, headers=token
        )
        assert done.status_code == 200, done.text
        stats = await redis_client.info("commandstats")
        scripts = sum(
            int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval")
        )
        assert scripts == 1, stats
