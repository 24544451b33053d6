"""A refusal reads as one sentence, the same in the API's problem `detail` and in the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine import errors
from engine.errors import ERRORS_BY_CODE
from tests.api_harness import Api, api_settings, assert_problem, running_api


@pytest.fixture
async def api(redis_client: object, redis_url: str) -> AsyncIterator[Api]:
    async with running_api(api_settings(redis_url)) as api:
        await api.put_sku("s1", on_hand=10)
        yield api


def sample(cls: type[errors.EngineError]) -> errors.EngineError:
    values: dict[str, Any] = {
        "sku": "tee",
        "location": "wh-1",
        "reservation_id": "cart-1",
        "detail": "on_hand would go below zero",
        "status": "released",
        "expected": "held",
        "sale_starts_at": 1_700_000_000_000,
        "sale_ends_at": 1_700_000_000_000,
        "expired_at": 1_700_000_000_000,
    }
    fields = getattr(cls, "__dataclass_fields__", {})
    return cls(**{name: values.get(name, 3) for name in fields if name != "sold_out"})


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_every_refusal_reads_as_a_sentence_without_reprs(code: str) -> None:
    text = str(sample(ERRORS_BY_CODE[code]))
    assert code not in text and "=" not in text and "'" not in text, text


def test_the_refusal_sentences_say_what_happened() -> None:
    assert str(errors.UnknownSku(sku="nope")) == "no SKU nope"
    ttl = errors.TtlOutOfRange(ttl_seconds=0, min=1, max=3600)
    assert str(ttl) == "ttl_seconds must be between 1 and 3600, got 0"


async def test_the_problem_detail_is_the_refusal_sentence(api: Api) -> None:
    body = assert_problem(await api.reserve(1, sku="nope"), 404, "unknown_sku")
    assert body["detail"] == str(errors.UnknownSku(sku="nope")) == "no SKU nope"
    body = assert_problem(await api.reserve(11), 409, "insufficient_stock")
    assert body["detail"] == "only 10 of s1 available, 11 requested"
