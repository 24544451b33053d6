"""/v1/webhooks: endpoints that receive signed stock and reservation events (admin).

The rows live in Postgres (the webhook tables); the dispatcher (`flashsale webhooks run`)
sends. Reached through the ledger's connection pool: one pool per process for the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Response
from psycopg_pool import PoolTimeout

from api.deps import ApiContext, Ctx, require_admin
from api.openapi import problem_responses
from api.problems import ApiProblem
from api.schemas.webhooks import (
    DeliveryOut,
    DeliveryPageOut,
    DeliveryStatus,
    SecretOut,
    WebhookCreatedOut,
    WebhookIn,
    WebhookListOut,
    WebhookOut,
    WebhookPatch,
)
from webhooks import store

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(require_admin)])

EndpointId = Annotated[
    str,
    Path(pattern=store.ENDPOINT_ID_PATTERN, examples=["ep_6f1c2a9d0b3e4f5a6b7c8d9e"]),
]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, examples=[4711])]
_ERRORS = (401, 403, 503)
_CONNECT_TIMEOUT_S = 5.0


@asynccontextmanager
async def _db(ctx: ApiContext) -> AsyncIterator[psycopg.AsyncConnection]:
    pool = ctx.ledger.pool
    if pool is None:
        raise ApiProblem(
            503, "webhooks_unavailable", "no database is configured (FLASHSALE_DATABASE_URL)"
        )
    try:
        async with pool.connection(timeout=_CONNECT_TIMEOUT_S) as conn:
            yield conn
    except psycopg.errors.UndefinedTable:
        raise ApiProblem(
            503, "webhooks_unavailable", "the webhook tables do not exist yet (run migrations)"
        ) from None
    except (psycopg.Error, PoolTimeout):
        raise ApiProblem(
            503, "webhooks_unavailable", "the database is unavailable", headers={"Retry-After": "5"}
        ) from None


async def dispatcher_lag(ctx: ApiContext) -> float | None:
    """Seconds the dispatcher is behind the ledger, for /readyz; None when it cannot be read."""
    try:
        async with _db(ctx) as conn:
            return await store.lag_seconds(conn)
    except ApiProblem:
        return None


def _not_found(endpoint_id: str) -> ApiProblem:
    return ApiProblem(404, "webhook_not_found", f"no webhook endpoint {endpoint_id}")


def _found(row: dict[str, Any] | None, endpoint_id: str) -> dict[str, Any]:
    if row is None:
        raise _not_found(endpoint_id)
    return row


@router.post(
    "",
    status_code=201,
    responses=problem_responses(400, *_ERRORS, 413, 422),
)
async def create_webhook(body: WebhookIn, ctx: Ctx) -> WebhookCreatedOut:
    """Register an endpoint. The answer carries its signing `secret`, shown this once.

    Events recorded from now on are sent to it, signed per the Standard Webhooks specification
    (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers).
    """
    async with _db(ctx) as conn:
        row = await store.create_endpoint(conn, body.url, list(body.events), body.description)
    return WebhookCreatedOut(**row)


@router.get("", responses=problem_responses(*_ERRORS))
async def list_webhooks(ctx: Ctx) -> WebhookListOut:
    """Every endpoint, oldest first (secrets are never listed)."""
    async with _db(ctx) as conn:
        rows = await store.list_endpoints(conn)
    return WebhookListOut(webhooks=[WebhookOut(**row) for row in rows])


@router.get("/{endpoint_id}", responses=problem_responses(*_ERRORS, 404, 422))
async def get_webhook(endpoint_id: EndpointId, ctx: Ctx) -> WebhookOut:
    """One endpoint: its subscription, and whether it is enabled (or why not)."""
    async with _db(ctx) as conn:
        row = await store.get_endpoint(conn, endpoint_id)
    return WebhookOut(**_found(row, endpoint_id))


@router.patch("/{endpoint_id}", responses=problem_responses(400, *_ERRORS, 404, 413, 422))
async def update_webhook(endpoint_id: EndpointId, body: WebhookPatch, ctx: Ctx) -> WebhookOut:
    """Change the URL, events or description; disable or enable it.

    Enabling clears the failure record; deliveries still pending are then sent again.
    """
    async with _db(ctx) as conn:
        row = await store.update_endpoint(
            conn,
            endpoint_id,
            url=body.url,
            event_types=list(body.events) if body.events is not None else None,
            description=body.description,
            enabled=body.enabled,
        )
    return WebhookOut(**_found(row, endpoint_id))


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Deleted, with its deliveries"},
        **problem_responses(*_ERRORS, 404, 422),
    },
)
async def delete_webhook(endpoint_id: EndpointId, ctx: Ctx) -> Response:
    """Delete the endpoint and its delivery history; nothing more is sent to it."""
    async with _db(ctx) as conn:
        deleted = await store.delete_endpoint(conn, endpoint_id)
    if not deleted:
        raise _not_found(endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", responses=problem_responses(*_ERRORS, 404, 422))
async def rotate_secret(endpoint_id: EndpointId, ctx: Ctx) -> SecretOut:
    """A new signing secret, shown this once. For 24 hours messages carry two signatures, one
    per secret, so receivers can switch to the new one without dropping a message."""
    async with _db(ctx) as conn:
        row = await store.rotate_secret(conn, endpoint_id)
    return SecretOut(**_found(row, endpoint_id))


@router.post(
    "/{endpoint_id}/test", status_code=202, responses=problem_responses(*_ERRORS, 404, 422)
)
async def test_webhook(endpoint_id: EndpointId, ctx: Ctx) -> DeliveryOut:
    """Queue a `webhook.test` message; the dispatcher sends it like any other. Follow it in the
    endpoint's deliveries (a disabled endpoint gets it once enabled)."""
    async with _db(ctx) as conn:
        row = await store.enqueue_test(conn, endpoint_id)
    return DeliveryOut(**_found(row, endpoint_id))


@router.get("/{endpoint_id}/deliveries", responses=problem_responses(*_ERRORS, 404, 422))
async def list_deliveries(
    endpoint_id: EndpointId,
    ctx: Ctx,
    status: Annotated[DeliveryStatus | None, Query(examples=["failed"])] = None,
    limit: Annotated[int, Query(ge=1, le=100, examples=[50])] = 50,
    cursor: Annotated[
        int | None,
        Query(ge=1, le=2**63 - 1, description="next_cursor of the previous page."),
    ] = None,
) -> DeliveryPageOut:
    """The endpoint's deliveries, newest first: status, attempts, last error and latency."""
    async with _db(ctx) as conn:
        if await store.get_endpoint(conn, endpoint_id) is None:
            raise _not_found(endpoint_id)
        rows, next_cursor = await store.list_deliveries(
            conn, endpoint_id, status=status, cursor=cursor, limit=limit
        )
    return DeliveryPageOut(deliveries=[DeliveryOut(**row) for row in rows], next_cursor=next_cursor)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    responses=problem_responses(*_ERRORS, 404, 422),
)
async def retry_delivery(endpoint_id: EndpointId, delivery_id: DeliveryId, ctx: Ctx) -> DeliveryOut:
    """Send a delivery again now (failed or not), with the same `webhook-id` and a fresh retry
    horizon."""
    async with _db(ctx) as conn:
        row = await store.retry_delivery(conn, endpoint_id, delivery_id)
    if row is None:
        raise ApiProblem(
            404, "delivery_not_found", f"no delivery {delivery_id} for webhook {endpoint_id}"
        )
    return DeliveryOut(**row)
