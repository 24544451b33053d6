"""The dispatcher against a real receiver: signed, at-least-once, ordered per SKU, retried,
disabled when failing for too long; a crash or a receiver outage loses nothing.

Ledger rows are written with plain SQL (as the sync worker writes them); endpoints are created
through the API. tests/test_webhooks_sale.py runs a whole sale through the engine and worker.
"""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from sync_worker.migrations import upgrade
from tests.api_harness import ADMIN, Api, api_settings, running_api
from tests.webhooks_support import (
    LEDGER_ROW,
    Receiver,
    deliveries,
    dispatcher_process,
    eventually,
    fast_settings,
    insert_ledger_rows,
    libpq,
    receiving,
    running_dispatcher,
)
from webhooks import signing
from webhooks.dispatcher import Horizon, backoff_seconds

SKUS = ("apple", "banana", "cherry")


@pytest.fixture
async def api(redis_client: object, redis_url: str, pg_database_url: str) -> AsyncIterator[Api]:
    upgrade(pg_database_url)
    async with running_api(api_settings(redis_url, pg_database_url)) as api:
        yield api


async def subscribe(api: Api, receiver: Receiver, events: list[str] | None = None) -> str:
    """Register the receiver; it verifies with the secret the API hands out."""
    body = {"url": receiver.url, "events": events or ["reservation.committed"]}
    response = await api.client.post("/v1/webhooks", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    return str(response.json()["id"])


def rows(count: int) -> list[tuple[str, str]]:
    return [("committed", SKUS[n % len(SKUS)]) for n in range(count)]


def assert_in_order_per_sku(received: list[Any]) -> None:
    by_sku: dict[str, list[int]] = defaultdict(list)
    for message in received:
        by_sku[message.sku].append(message.ledger_id)
    for sku, ids in by_sku.items():
        assert ids == sorted(ids), (sku, ids)


def endpoint_row(database_url: str, endpoint_id: str) -> tuple[Any, ...]:
    with psycopg.connect(libpq(database_url)) as conn:
        row = conn.execute(
            "SELECT enabled, disabled_reason FROM webhook_endpoints WHERE id = %s", (endpoint_id,)
        ).fetchone()
    assert row is not None
    return tuple(row)


async def test_each_ledger_row_reaches_each_subscriber_signed_once_and_in_order(
    api: Api, pg_database_url: str
) -> None:
    async with receiving() as first, receiving(delay=0.01) as second:
        await subscribe(api, first)
        await subscribe(api, second, ["reservation.committed", "inventory.out_of_stock"])
        ids = insert_ledger_rows(pg_database_url, [*rows(30), ("out_of_stock", "apple")])
        async with running_dispatcher(pg_database_url):
            await eventually(lambda: len(second.unique()) == 31, what="all deliveries")
            await eventually(lambda: len(first.unique()) == 30, what="committed deliveries")
    assert not first.rejected and not second.rejected
    assert sorted(m.ledger_id for m in first.unique()) == ids[:30]  # out_of_stock: not asked for
    assert sorted(m.ledger_id for m in second.unique()) == ids
    assert_in_order_per_sku(first.unique())
    assert_in_order_per_sku(second.unique())
    message = second.unique()[0]
    assert message.payload["type"] == "reservation.committed"
    assert {"sku", "location", "on_hand", "reserved", "committed", "available", "ledger_id"} <= (
        message.payload["data"].keys()
    )
    ids_per_endpoint = {m.message_id for m in first.unique()} & {
        m.message_id for m in second.unique()
    }
    assert not ids_per_endpoint  # webhook-id is per (endpoint, ledger row)
    assert {d["status"] for d in deliveries(pg_database_url)} == {"delivered"}


async def test_an_endpoint_gets_what_is_recorded_after_it_was_created(
    api: Api, pg_database_url: str
) -> None:
    insert_ledger_rows(pg_database_url, rows(5))  # history: nobody to send it to
    async with receiving() as receiver, running_dispatcher(pg_database_url):
        await eventually(lambda: _cursor(pg_database_url) > 0, what="the cursor to move")
        await subscribe(api, receiver)
        later = insert_ledger_rows(pg_database_url, rows(3))
        await eventually(lambda: len(receiver.unique()) == 3, what="the new rows")
        await asyncio.sleep(0.3)
    assert sorted(m.ledger_id for m in receiver.unique()) == later


def _cursor(database_url: str) -> int:
    with psycopg.connect(libpq(database_url)) as conn:
        row = conn.execute("SELECT ledger_id FROM webhook_cursors").fetchone()
    return int(row[0]) if row else 0


async def test_a_row_that_commits_late_with_a_smaller_id_is_not_skipped(
    api: Api, pg_database_url: str
) -> None:
    async with receiving() as receiver:
        await subscribe(api, receiver)
        async with await psycopg.AsyncConnection.connect(libpq(pg_database_url)) as slow:
            # A sync worker's transaction drew an id and has not committed yet ...
            await slow.execute(LEDGER_ROW, ("1-0", "committed", "apple", 1, 9, "r-late"))
            # ... while a later one commits: the dispatcher must wait, not move past the first.
            (later,) = insert_ledger_rows(pg_database_url, [("committed", "apple")])
            async with running_dispatcher(pg_database_url):
                await asyncio.sleep(1.0)
                assert receiver.unique() == []
                await slow.commit()
                await eventually(lambda: len(receiver.unique()) == 2, what="both rows")
    first, second = receiver.unique()
    assert first.ledger_id < second.ledger_id == later  # ledger order for the SKU


@pytest.mark.slow
@pytest.mark.crash
async def test_sigkill_of_the_dispatcher_mid_delivery_loses_nothing(
    api: Api, pg_database_url: str, redis_url: str
) -> None:
    async with receiving(delay=0.15) as receiver:
        await subscribe(api, receiver)
        ids = insert_ledger_rows(pg_database_url, rows(12))
        process = dispatcher_process(pg_database_url, redis_url, webhook_timeout_seconds=0.5)
        try:
            await eventually(lambda: len(receiver.accepted) >= 3, what="first deliveries")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            process.kill()
        sent_before = len(receiver.unique())
        assert sent_before < len(ids), "the kill came too late to test anything"
        process = dispatcher_process(pg_database_url, redis_url, webhook_timeout_seconds=0.5)
        try:
            await eventually(lambda: len(receiver.unique()) == len(ids), 40, "every delivery")
        finally:
            process.terminate()
            process.wait(20)
    assert sorted(m.ledger_id for m in receiver.unique()) == ids
    assert_in_order_per_sku(receiver.unique())
    assert not receiver.rejected


@pytest.mark.slow
async def test_a_receiver_down_for_ten_seconds_then_back_receives_everything(
    api: Api, pg_database_url: str
) -> None:
    receiver = Receiver()
    receiver.start()
    await subscribe(api, receiver)
    receiver.stop()  # down
    ids = insert_ledger_rows(pg_database_url, rows(12))
    settings = fast_settings(webhook_backoff_base_seconds=0.2, webhook_backoff_max_seconds=1.0)
    async with running_dispatcher(pg_database_url, settings):
        await asyncio.sleep(10)
        tried = deliveries(pg_database_url)
        assert {d["status"] for d in tried} == {"pending"}
        assert all(d["attempts"] >= 1 and d["last_error"] for d in tried if d["attempts"])
        assert max(d["attempts"] for d in tried) >= 3  # retried, with backoff
        receiver.start()  # back, on the same port
        try:
            await eventually(lambda: len(receiver.unique()) == len(ids), 20, "the backlog")
        finally:
            receiver.stop()
    assert sorted(m.ledger_id for m in receiver.unique()) == ids
    assert_in_order_per_sku(receiver.unique())
    assert {d["status"] for d in deliveries(pg_database_url)} == {"delivered"}


async def test_a_wrong_secret_fails_verification(api: Api, pg_database_url: str) -> None:
    async with receiving() as receiver:
        await subscribe(api, receiver)
        receiver.secret = signing.new_secret()  # not the endpoint's
        insert_ledger_rows(pg_database_url, rows(2))
        async with running_dispatcher(pg_database_url):
            await eventually(lambda: len(receiver.rejected) >= 2, what="rejections")
    assert receiver.accepted == []
    assert set(receiver.rejected) == {"No matching signature found"}
    tried = deliveries(pg_database_url)
    assert {d["status"] for d in tried} == {"pending"}  # refused, so retried later
    assert {d["last_error"] for d in tried if d["attempts"]} == {"HTTP 400"}

    body = '{"type":"webhook.test"}'
    right = signing.new_secret()
    headers = signing.headers("msg_1", body, [right])
    Webhook(right).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(right).verify(body.replace("test", "tset"), headers)  # a changed body


async def test_after_a_rotation_both_secrets_verify(api: Api, pg_database_url: str) -> None:
    async with receiving() as receiver:
        endpoint_id = await subscribe(api, receiver)
        old = receiver.secret
        rotated = await api.client.post(f"/v1/webhooks/{endpoint_id}/rotate-secret", headers=ADMIN)
        new = rotated.json()["secret"]
        async with running_dispatcher(pg_database_url):
            insert_ledger_rows(pg_database_url, rows(1))
            await eventually(lambda: len(receiver.accepted) == 1, what="old-secret delivery")
            receiver.secret = new
            insert_ledger_rows(pg_database_url, rows(1))
            await eventually(lambda: len(receiver.accepted) == 2, what="new-secret delivery")
    assert old != new and not receiver.rejected


async def test_an_endpoint_answering_500_forever_ends_disabled_with_the_reason(
    api: Api, pg_database_url: str
) -> None:
    async with receiving(status=500) as receiver:
        endpoint_id = await subscribe(api, receiver)
        insert_ledger_rows(pg_database_url, rows(3))
        settings = fast_settings(
            webhook_retry_horizon_seconds=1.0, webhook_disable_after_seconds=2.0
        )
        async with running_dispatcher(pg_database_url, settings):
            await eventually(
                lambda: endpoint_row(pg_database_url, endpoint_id)[0] is False, 20, "disabled"
            )
            requests_then = receiver.requests
            await asyncio.sleep(0.5)
            assert receiver.requests == requests_then  # nothing more is sent to it
    enabled, reason = endpoint_row(pg_database_url, endpoint_id)
    assert "no successful delivery since" in reason and "HTTP 500" in reason
    shown = (await api.client.get(f"/v1/webhooks/{endpoint_id}", headers=ADMIN)).json()
    assert shown["enabled"] is False and shown["disabled_reason"] == reason
    failed = await api.client.get(
        f"/v1/webhooks/{endpoint_id}/deliveries?status=failed", headers=ADMIN
    )
    listed = failed.json()["deliveries"]
    assert listed, "past the retry horizon, deliveries are failed and visible"
    assert all(d["last_status_code"] == 500 and d["attempts"] >= 2 for d in listed)
    assert all(d["last_latency_ms"] is not None for d in listed)


async def test_a_slow_endpoint_does_not_hold_back_the_others(
    api: Api, pg_database_url: str
) -> None:
    async with receiving(delay=5.0) as slow, receiving() as fast:
        await subscribe(api, slow)
        await subscribe(api, fast)
        insert_ledger_rows(pg_database_url, rows(20))
        settings = fast_settings(webhook_timeout_seconds=6.0)
        async with running_dispatcher(pg_database_url, settings):
            await eventually(lambda: len(fast.unique()) == 20, 4.5, "the fast endpoint")
            assert len(slow.accepted) == 0  # its first requests are still being answered
            assert slow.requests == len(SKUS)  # one per SKU: the heads, in flight


async def test_an_attempt_is_bounded_even_when_the_answer_trickles_in(
    api: Api, pg_database_url: str
) -> None:
    async with receiving(trickle=3.0) as receiver:
        await subscribe(api, receiver)
        insert_ledger_rows(pg_database_url, rows(1))
        settings = fast_settings(webhook_timeout_seconds=0.5, webhook_backoff_base_seconds=60.0)
        async with running_dispatcher(pg_database_url, settings):
            await eventually(
                lambda: [d["attempts"] for d in deliveries(pg_database_url)] == [1],
                2,
                "the first attempt to end",
            )
    (tried,) = deliveries(pg_database_url)
    assert tried["status"] == "pending" and tried["last_error"] == "no answer within 0.5 s"


async def test_a_test_message_and_a_manual_retry_are_sent(api: Api, pg_database_url: str) -> None:
    async with receiving() as receiver:
        endpoint_id = await subscribe(api, receiver)
        queued = await api.client.post(f"/v1/webhooks/{endpoint_id}/test", headers=ADMIN)
        async with running_dispatcher(pg_database_url):
            await eventually(lambda: len(receiver.accepted) == 1, what="the test message")
            delivery_id = queued.json()["id"]
            # Right after the receiver answered: the dispatcher may not have recorded the
            # outcome yet, and must not let that late record cancel the retry.
            retried = await api.client.post(
                f"/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry", headers=ADMIN
            )
            assert retried.status_code == 202
            await eventually(lambda: len(receiver.accepted) == 2, what="the retry")
            # The receiver answers before the dispatcher records the answer: wait for the record.
            await eventually(
                lambda: [d["attempts"] for d in deliveries(pg_database_url)] == [2],
                what="the retry's outcome recorded",
            )
    first, again = receiver.accepted
    assert first.payload["type"] == "webhook.test"
    assert first.message_id == again.message_id  # a receiver drops it as a repeat
    page = await api.client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=ADMIN)
    (shown,) = page.json()["deliveries"]
    assert shown["status"] == "delivered" and shown["attempts"] == 2
    assert shown["last_status_code"] == 200 and shown["last_latency_ms"] is not None


def test_the_horizon_waits_for_every_transaction_running_when_an_id_was_drawn() -> None:
    horizon = Horizon()
    assert horizon.observe(last_id=10, xmin=100, xmax=105) == 0  # 10 read; not paired yet
    assert horizon.observe(last_id=12, xmin=101, xmax=107) == 0  # paired with xmax 107
    assert horizon.observe(last_id=12, xmin=106, xmax=108) == 0  # 101..106 still running
    assert horizon.observe(last_id=15, xmin=107, xmax=109) == 10  # all before 107 done
    # Nothing running: what was read at the previous poll is safe, what is read now is not yet.
    assert horizon.observe(last_id=20, xmin=109, xmax=109) == 15
    assert horizon.observe(last_id=20, xmin=110, xmax=110) == 20


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    import random

    settings = fast_settings(webhook_backoff_base_seconds=1.0, webhook_backoff_max_seconds=30.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (60, 30.0)]:
        delays = [backoff_seconds(attempt, settings, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays[:3])
        assert len(set(delays)) > 1  # jitter: retries of many deliveries do not line up
