"""/v1/reservations: hold a cart, read it, extend, commit, fulfil, release.

A storefront key acts on a reservation only with its X-Reservation-Token; an admin key needs
none. The token's signature is checked before the body is validated or Redis is asked, so a
guessed id learns nothing (403). A token also names the incarnation of the id it was issued for:
the engine compares it with the reservation's in the script that acts, GET with the reservation
it reads, so a token from before the id was reused opens nothing (403).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from api.deps import (
    ApiContext,
    AuthorizedReservation,
    Ctx,
    ReservationId,
    TokenIncarnation,
    authenticate,
    check_incarnation,
    context,
    require_admin,
)
from api.openapi import problem_responses
from api.problems import ApiProblem, engine_problem
from api.schemas.reservations import CommitIn, ExtendIn, FulfilIn, ReservationOut, ReserveIn
from engine.types import ID_PATTERN, CartLine, FulfilLine, Reservation

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=ID_PATTERN.pattern,
        max_length=64,
        description="Makes a retry safe: the same key and request return the first answer.",
    ),
]
_ON_RESERVATION = (401, 403, 404, 422, 429, 503)
_ON_CHANGE = (*_ON_RESERVATION, 400, 409, 413)  # with a body, refusable by the engine


@router.post(
    "",
    status_code=201,
    response_model=ReservationOut,  # also when the sold-out refusal is returned as a Response
    dependencies=[Depends(authenticate)],
    responses={
        200: {"model": ReservationOut, "description": "Replay of an earlier identical request"},
        **problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
)
async def reserve(
    body: ReserveIn,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ReservationOut | Response:
    """Hold every line of a cart, or none (201; 200 when an idempotent retry replays)."""
    # The context from the request, not as the Ctx dependency: the busiest route solves one
    # dependency (the key check) per request instead of two.
    ctx = context(request)
    held = await hold_cart(ctx, body, idempotency_key)
    if isinstance(held, Response):
        return held
    if held.replayed:
        response.status_code = 200
    return reservation_out(ctx, held)


async def hold_cart(
    ctx: ApiContext, body: ReserveIn, idempotency_key: str | None
) -> Reservation | Response:
    """The reservation a valid reserve request makes (or replays), or the sold-out problem.

    Shared by the route and the reserve lane (api/reserve_lane.py): one body of rules. Any other
    refusal is raised, for the app's exception handlers.
    """
    if idempotency_key and body.reservation_id and idempotency_key != body.reservation_id:
        raise ApiProblem(
            422, "validation_failed", "Idempotency-Key and reservation_id name different ids"
        )
    # Absent both, a fresh id: the request is then not safe to retry, as the caller chose.
    reservation_id = idempotency_key or body.reservation_id or uuid.uuid4().hex
    lines = [CartLine(ln.sku, ln.quantity, ln.location) for ln in body.lines]
    # A sold-out answer from memory comes before the rate limiter's Redis round trip: refusing
    # costs Redis at most a share of one batched existence check (none for an id made up here),
    # so it need not be rationed either.
    refusal = await ctx.engine.local_refusal(
        reservation_id,
        body.customer_id,
        lines,
        body.ttl_seconds,
        new_id=not (idempotency_key or body.reservation_id),
    )
    if refusal is not None:
        # Answered, not raised: the problem the exception handler would build, without unwinding
        # the framework's exception machinery on what is most of a sold-out sale's traffic.
        ctx.metrics.refused(refusal.code)
        return engine_problem(refusal)
    await ctx.limiter.hit("customer", body.customer_id, ctx.settings.rate_limit_per_customer)
    return await ctx.engine.reserve(reservation_id, body.customer_id, lines, body.ttl_seconds)


@router.get("/{reservation_id}", responses=problem_responses(*_ON_RESERVATION))
async def get_reservation(
    reservation_id: ReservationId, incarnation: TokenIncarnation, ctx: Ctx
) -> ReservationOut:
    """State and lines (a hold past its deadline reads as expired)."""
    # The token's incarnation is checked against this read: one read, not two.
    reservation = await ctx.engine.get_reservation(reservation_id)
    check_incarnation(reservation, incarnation)
    return reservation_out(ctx, reservation)


@router.post("/{reservation_id}/extend", responses=problem_responses(*_ON_CHANGE, 410))
async def extend(
    access: AuthorizedReservation, ctx: Ctx, body: ExtendIn | None = None
) -> ReservationOut:
    """A new deadline, `ttl_seconds` from now (409 past the SKU's extension cap)."""
    ttl = body.ttl_seconds if body is not None else None
    reservation = await ctx.engine.extend(access.id, ttl, incarnation=access.incarnation)
    return reservation_out(ctx, reservation)


@router.post("/{reservation_id}/commit", responses=problem_responses(*_ON_CHANGE, 410))
async def commit(access: AuthorizedReservation, body: CommitIn, ctx: Ctx) -> ReservationOut:
    """Held → committed: an order was placed. Retrying with the same order_id is safe."""
    reservation = await ctx.engine.commit(access.id, body.order_id, incarnation=access.incarnation)
    return reservation_out(ctx, reservation)


@router.post(
    "/{reservation_id}/fulfil",
    dependencies=[Depends(require_admin)],
    responses=problem_responses(*_ON_CHANGE),
)
async def fulfil(
    reservation_id: ReservationId,
    ctx: Ctx,
    body: FulfilIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> ReservationOut:
    """Committed units ship, all of them or the lines given (admin)."""
    body = body or FulfilIn(lines=None, fulfilment_id=None)
    if idempotency_key and body.fulfilment_id and idempotency_key != body.fulfilment_id:
        raise ApiProblem(
            422, "validation_failed", "Idempotency-Key and fulfilment_id name different ids"
        )
    lines = None
    if body.lines is not None:
        lines = [FulfilLine(ln.sku, ln.quantity, ln.location) for ln in body.lines]
    reservation = await ctx.engine.fulfil(
        reservation_id, lines, fulfilment_id=idempotency_key or body.fulfilment_id
    )
    return reservation_out(ctx, reservation)


@router.delete(
    "/{reservation_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def release(access: AuthorizedReservation, ctx: Ctx) -> Response:
    """Give the units back. Idempotent: 204 every time, also for a finished or unknown cart."""
    await ctx.engine.release(access.id, incarnation=access.incarnation)
    return Response(status_code=204)


def reservation_out(ctx: ApiContext, reservation: Reservation) -> ReservationOut:
    return ReservationOut.of(reservation, ctx.tokens.issue(reservation.id, reservation.incarnation))
