"""Endpoints and deliveries in Postgres: plain SQL on an async psycopg connection.

The API's admin routes and the dispatcher both use these, so a row means the same to both.
Every function takes a connection in autocommit mode (or inside the caller's transaction).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from webhooks import events
from webhooks.signing import new_secret

CURSOR: Final = "ledger"  # the dispatcher's row in webhook_cursors
ENDPOINT_ID_PATTERN: Final = r"^ep_[0-9a-f]{24}$"
STATUSES: Final = ("pending", "delivered", "failed")
# After a rotation the old secret still signs this long, so receivers can switch over.
ROTATION_GRACE: Final = timedelta(hours=24)
OPERATOR_DISABLED: Final = "disabled by an operator"

ENDPOINT_COLUMNS: Final = (
    "id",
    "url",
    "description",
    "events",
    "enabled",
    "disabled_reason",
    "disabled_at",
    "failing_since",
    "created_at",
    "updated_at",
)
DELIVERY_COLUMNS: Final = (
    "id",
    "message_id",
    "endpoint_id",
    "ledger_id",
    "event_type",
    "sku",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "retry_until",
    "last_attempt_at",
    "last_status_code",
    "last_error",
    "last_latency_ms",
    "created_at",
    "finished_at",
)
_ENDPOINT = ", ".join(ENDPOINT_COLUMNS)
_DELIVERY = ", ".join(DELIVERY_COLUMNS)


async def _one(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchone()


async def _all(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()


async def create_endpoint(
    conn: AsyncConnection, url: str, event_types: list[str], description: str
) -> dict[str, Any]:
    """The new endpoint's row, with its `secret` (shown this once)."""
    params = {
        "id": "ep_" + secrets.token_hex(12),
        "url": url,
        "events": sorted(set(event_types)),
        "description": description,
        "secret": new_secret(),
    }
    row = await _one(
        conn,
        f"""INSERT INTO webhook_endpoints (id, url, events, description, secret)
        VALUES (%(id)s, %(url)s, %(events)s, %(description)s, %(secret)s)
        RETURNING {_ENDPOINT}, secret""",
        params,
    )
    assert row is not None
    return row


async def list_endpoints(conn: AsyncConnection) -> list[dict[str, Any]]:
    return await _all(conn, f"SELECT {_ENDPOINT} FROM webhook_endpoints ORDER BY created_at", {})


async def get_endpoint(conn: AsyncConnection, endpoint_id: str) -> dict[str, Any] | None:
    sql = f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = %(id)s"
    return await _one(conn, sql, {"id": endpoint_id})


async def update_endpoint(
    conn: AsyncConnection,
    endpoint_id: str,
    *,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> dict[str, Any] | None:
    """Change what is given; enabling clears the failure record, so the endpoint starts afresh."""
    sets = ["updated_at = now()"]
    params: dict[str, Any] = {"id": endpoint_id}
    if url is not None:
        sets.append("url = %(url)s")
        params["url"] = url
    if event_types is not None:
        sets.append("events = %(events)s")
        params["events"] = sorted(set(event_types))
    if description is not None:
        sets.append("description = %(description)s")
        params["description"] = description
    if enabled is True:
        sets += [
            "enabled = true",
            "disabled_reason = NULL",
            "disabled_at = NULL",
            "failing_since = NULL",
        ]
    elif enabled is False:
        # An endpoint the dispatcher already disabled keeps the reason it gave.
        sets += [
            "disabled_reason = CASE WHEN enabled THEN %(reason)s ELSE disabled_reason END",
            "disabled_at = CASE WHEN enabled THEN now() ELSE disabled_at END",
            "enabled = false",
        ]
        params["reason"] = OPERATOR_DISABLED
    sql = f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE id = %(id)s RETURNING {_ENDPOINT}"
    return await _one(conn, sql, params)


async def delete_endpoint(conn: AsyncConnection, endpoint_id: str) -> bool:
    """Its deliveries go with it (ON DELETE CASCADE)."""
    sql = "DELETE FROM webhook_endpoints WHERE id = %(id)s RETURNING id"
    return await _one(conn, sql, {"id": endpoint_id}) is not None


async def rotate_secret(conn: AsyncConnection, endpoint_id: str) -> dict[str, Any] | None:
    """A new secret; the old one keeps signing (alongside) until `previous_secret_expires_at`."""
    params = {
        "id": endpoint_id,
        "secret": new_secret(),
        "until": datetime.now(UTC) + ROTATION_GRACE,
    }
    sql = """UPDATE webhook_endpoints SET previous_secret = secret, secret = %(secret)s,
        previous_secret_expires_at = %(until)s, updated_at = now()
        WHERE id = %(id)s RETURNING id, secret, previous_secret_expires_at"""
    return await _one(conn, sql, params)


async def enqueue_test(conn: AsyncConnection, endpoint_id: str) -> dict[str, Any] | None:
    """A `webhook.test` delivery the dispatcher sends like any other (None: no such endpoint)."""
    params = {
        "message_id": "msg_test_" + secrets.token_hex(12),
        "endpoint_id": endpoint_id,
        "payload": Jsonb(events.test_payload(endpoint_id, datetime.now(UTC))),
        "type": events.TEST,
    }
    sql = f"""INSERT INTO webhook_deliveries (message_id, endpoint_id, event_type, payload)
        SELECT %(message_id)s, id, %(type)s, %(payload)s FROM webhook_endpoints
        WHERE id = %(endpoint_id)s RETURNING {_DELIVERY}"""
    return await _one(conn, sql, params)


async def list_deliveries(
    conn: AsyncConnection,
    endpoint_id: str,
    *,
    status: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; the cursor is the last id seen. Returns the page and the next cursor."""
    params = {
        "endpoint_id": endpoint_id,
        "status": status,
        "cursor": cursor,
        "limit": limit + 1,
    }
    rows = await _all(
        conn,
        f"""SELECT {_DELIVERY} FROM webhook_deliveries
        WHERE endpoint_id = %(endpoint_id)s
          AND (%(status)s::text IS NULL OR status = %(status)s)
          AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)
        ORDER BY id DESC LIMIT %(limit)s""",
        params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (int(rows[-1]["id"]) if more else None)


async def retry_delivery(
    conn: AsyncConnection, endpoint_id: str, delivery_id: int
) -> dict[str, Any] | None:
    """Due again now, with a fresh retry horizon; the `webhook-id` stays the same."""
    # Clearing the lease drops the outcome of an attempt in flight: it is sent again.
    sql = f"""UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
        retry_until = NULL, finished_at = NULL, locked_until = NULL
        WHERE id = %(id)s AND endpoint_id = %(endpoint_id)s RETURNING {_DELIVERY}"""
    return await _one(conn, sql, {"id": delivery_id, "endpoint_id": endpoint_id})


async def lag_seconds(conn: AsyncConnection) -> float:
    """Age of the oldest ledger row the dispatcher has not turned into deliveries (0: none)."""
    cur = await conn.execute(
        """SELECT extract(epoch FROM now() - t.recorded_at) FROM inventory_transactions t
        WHERE t.id > coalesce((SELECT ledger_id FROM webhook_cursors WHERE name = %s), 0)
        ORDER BY t.id LIMIT 1""",
        (CURSOR,),
    )
    row = await cur.fetchone()
    return max(0.0, float(row[0])) if row else 0.0
