"""Stock totals stay where every integer is exact, and the refusal names the limit.

Lua numbers are doubles and Redis's cjson writes 14 significant digits, so a total past the limit
would be stored or answered rounded: every total (on_hand, safety_stock, backorder_limit,
incoming, reserved, committed) is kept at or below QUANTITY_LIMIT, checked before writing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.schemas.common import MAX_UNITS
from engine import CartLine, LocationConfig, ReservationEngine, SkuConfig
from engine import errors as e
from engine.validation import QUANTITY_LIMIT
from tests.api_harness import ADMIN, Api, api_settings, assert_problem, running_api
from tests.engine_support import check_invariants, make_engine, sku

LUA_NUMBERS = Path(__file__).parent.parent / "lua" / "includes" / "numbers.lua"


@pytest.fixture
async def engine(redis_client: object, redis_url: str) -> AsyncIterator[ReservationEngine]:
    eng = await make_engine(redis_url, max_quantity_per_line=QUANTITY_LIMIT)
    yield eng
    await eng.aclose()


def test_the_limit_is_one_constant_shared_with_the_scripts_and_the_api():
    declared = re.search(r"^local QUANTITY_LIMIT = (\S+)", LUA_NUMBERS.read_text(), re.MULTILINE)
    assert declared is not None
    assert float(declared.group(1)) == QUANTITY_LIMIT == MAX_UNITS
    assert QUANTITY_LIMIT < 10**14  # below 14 significant digits: cjson writes it exactly


async def test_repeated_adjustments_stop_at_the_limit(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(0))
    step = QUANTITY_LIMIT // 10
    for _ in range(10):
        await engine.adjust("tee", "wh-1", step, reason="received")
    with pytest.raises(e.QuantityTooLarge) as info:
        await engine.adjust("tee", "wh-1", step, reason="received")
    assert info.value.details == {
        "sku": "tee",
        "location": "wh-1",
        "total": "on_hand",
        "value": QUANTITY_LIMIT + step,
        "limit": QUANTITY_LIMIT,
        "detail": f"on_hand would be {QUANTITY_LIMIT + step}, above the limit of "
        f"{QUANTITY_LIMIT} units",
    }
    with pytest.raises(e.QuantityTooLarge):
        await engine.restock("tee", "wh-1", 1)
    assert (await engine.inventory("tee")).total.on_hand == QUANTITY_LIMIT
    level = await engine.adjust("tee", "wh-1", -1, reason="shrinkage")
    assert level.on_hand == QUANTITY_LIMIT - 1
    assert (await engine.inventory("tee")).total.on_hand == QUANTITY_LIMIT - 1
    await check_invariants(engine, ["tee"])


async def test_set_stores_exactly_what_was_asked(engine: ReservationEngine):
    await engine.configure_sku("tee", sku(0))
    for value in (QUANTITY_LIMIT, QUANTITY_LIMIT - 1, 5, 123_456_789_012):
        level = await engine.set_on_hand("tee", "wh-1", value)
        assert level.on_hand == value
        assert (await engine.inventory("tee")).total.on_hand == value
    with pytest.raises(e.QuantityTooLarge) as info:
        await engine.set_on_hand("tee", "wh-1", QUANTITY_LIMIT + 1)
    assert info.value.details["limit"] == QUANTITY_LIMIT
    assert (await engine.inventory("tee")).total.on_hand == 123_456_789_012
    await check_invariants(engine, ["tee"])


@pytest.mark.parametrize("field", ["on_hand", "safety_stock", "backorder_limit", "incoming"])
async def test_a_sku_config_past_the_limit_is_refused(engine: ReservationEngine, field: str):
    values = {"on_hand": 1, "safety_stock": 0, "backorder_limit": 0, "incoming": 0}
    values[field] = QUANTITY_LIMIT + 1
    config = SkuConfig(locations=(LocationConfig("wh-1", **values),))
    with pytest.raises(e.QuantityTooLarge) as info:
        await engine.configure_sku("tee", config)
    assert (info.value.total, info.value.limit) == (field, QUANTITY_LIMIT)
    assert await engine.sku_config("tee") is None  # nothing written
    values[field] = QUANTITY_LIMIT
    await engine.configure_sku("tee", SkuConfig(locations=(LocationConfig("wh-1", **values),)))


async def test_reserved_and_committed_stay_within_the_limit(engine: ReservationEngine):
    # Backorder room beyond on_hand could otherwise push reserved + committed past the limit.
    await engine.configure_sku("tee", sku(QUANTITY_LIMIT, backorder_limit={"wh-1": QUANTITY_LIMIT}))
    await engine.reserve("r1", "c1", [CartLine("tee", QUANTITY_LIMIT - 1)])
    await engine.commit("r1", "o1")
    await engine.reserve("r2", "c2", [CartLine("tee", 1)])
    with pytest.raises(e.QuantityTooLarge) as info:
        await engine.reserve("r3", "c3", [CartLine("tee", 1)])
    assert (info.value.total, info.value.limit) == ("reserved", QUANTITY_LIMIT)
    level = (await engine.inventory("tee")).total
    assert (level.reserved, level.committed) == (1, QUANTITY_LIMIT - 1)
    await check_invariants(engine, ["tee"])


async def test_the_api_answers_422_naming_the_limit(redis_client: object, redis_url: str):
    api: Api
    async with running_api(api_settings(redis_url)) as api:
        await api.put_sku("s1", on_hand=QUANTITY_LIMIT)
        response = await api.client.post(
            "/v1/inventory/s1/adjustments",
            json={"location": "wh-1", "delta": 1, "reason": "received"},
            headers=ADMIN,
        )
        assert_problem(response, 422, "quantity_too_large")
        body = response.json()
        assert (body["limit"], body["total"], body["value"]) == (
            QUANTITY_LIMIT,
            "on_hand",
            QUANTITY_LIMIT + 1,
        )
        assert str(QUANTITY_LIMIT) in body["detail"]
