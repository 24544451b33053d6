"""schemathesis against the live OpenAPI document: no 5xx, responses as documented.

The app runs on uvicorn in a thread (real HTTP) over Redis and a migrated Postgres. Every
operation gets a bounded number of generated requests, valid and invalid, with an admin key (so
requests get past auth and reach the engine); a seeded SKU gives the generator a real target.
All of schemathesis' default checks run, including "valid data is accepted" and "invalid data
is rejected", except where a rule spans two fields the schema cannot relate, or bounds a time
(JSON Schema has no date bounds; the range is in the field's description), below.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from engine.validation import time_in_range
from sync_worker.migrations import upgrade
from tests.api_harness import ADMIN, api_settings, live_server
from tests.conftest import libpq_url, with_database

MAX_EXAMPLES = 12  # per operation: the whole module stays well under a minute


@pytest.fixture(scope="module")
def module_database(database_url: str) -> Iterator[str]:
    name = f"test_st_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_database(database_url, name)
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def base_url(redis_url: str, module_database: str) -> Iterator[str]:
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    # Rate limits off: generated bursts must test the schema, not the limiter.
    with live_server(api_settings(redis_url, module_database)) as url:
        body = {"locations": [{"location": "wh-1", "on_hand": 1000}], "max_extensions": 100}
        httpx.put(f"{url}/v1/skus/s1", json=body, headers=ADMIN).raise_for_status()
        yield url


def _document() -> dict[str, Any]:
    # The document the server serves, built without connecting anywhere (nothing runs until
    # the lifespan), so the operations are known at collection time.
    document: dict[str, Any] = create_app(api_settings("redis://127.0.0.1:1/0")).openapi()
    return document


schema = schemathesis.openapi.from_dict(
    _document(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


def _breaks_a_cross_field_rule(case: Any) -> bool:
    """Each field valid, the request refused for how they relate (or for the store's state)."""
    body = case.body if isinstance(case.body, dict) else {}
    header = (case.headers or {}).get("Idempotency-Key")
    given_id = body.get("reservation_id") or body.get("fulfilment_id")
    if header and given_id and header != given_id:
        return True  # Idempotency-Key and the body name two different ids
    starts, ends = _time(body.get("sale_starts_at")), _time(body.get("sale_ends_at"))
    if starts and ends and starts >= ends:
        return True  # a sale window that closes before it opens
    if any(t and not time_in_range(t) for t in (starts, ends)):
        return True  # a time outside the range its description states (JSON Schema has no bound)
    locations = body.get("locations")
    if case.path == "/v1/skus/{sku}" and not locations:
        return True  # a new SKU needs locations; an existing one keeps its own
    if case.path == "/v1/skus/{sku}" and "placement_group" in body:
        return True  # an existing SKU (an earlier example's) keeps the group it was created with
    listed = locations if isinstance(locations, list) else []
    names = [
        loc["location"]
        for loc in listed
        if isinstance(loc, dict) and isinstance(loc.get("location"), str)
    ]
    return len(names) != len(set(names))  # a location listed twice


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):  # negative data: not a time at all
        return None


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any, base_url: str) -> None:
    excluded = [positive_data_acceptance] if _breaks_a_cross_field_rule(case) else []
    case.call_and_validate(base_url=base_url, headers=ADMIN, excluded_checks=excluded)
