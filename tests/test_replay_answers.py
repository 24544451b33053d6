"""An idempotent retry of a reserve answers what the reservation is now, from any process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine import CartLine, ReservationEngine
from tests.engine_support import check_invariants, make_engine, sku


@pytest.fixture
async def engine(redis_client: object, redis_url: str) -> AsyncIterator[ReservationEngine]:
    eng = await make_engine(redis_url)
    yield eng
    await eng.aclose()


async def test_a_replay_past_the_deadline_reports_expired(engine: ReservationEngine) -> None:
    await engine.configure_sku("tee", sku(3))
    first = await engine.reserve("r1", "c1", [CartLine("tee", 1)], ttl_seconds=60)
    assert first.status == "held"
    engine.clock_offset_ms = 61_000
    replay = await engine.reserve("r1", "c1", [CartLine("tee", 1)], ttl_seconds=60)
    assert replay.replayed
    assert replay.status == "expired"
    assert replay.expires_at == first.expires_at  # the deadline it had, not a new one
    assert (await engine.get_reservation("r1")).status == "expired"
    assert (await engine.inventory("tee")).total.available == 3
    await check_invariants(engine, ["tee"])


async def test_a_replay_before_the_deadline_still_reports_held(engine: ReservationEngine) -> None:
    await engine.configure_sku("tee", sku(3))
    await engine.reserve("r1", "c1", [CartLine("tee", 1)], ttl_seconds=60)
    engine.clock_offset_ms = 59_000
    replay = await engine.reserve("r1", "c1", [CartLine("tee", 1)], ttl_seconds=60)
    assert (replay.replayed, replay.status) == (True, "held")
