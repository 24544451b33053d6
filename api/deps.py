"""What a route needs, as FastAPI dependencies: the per-process context and the caller.

Ctx                    the ApiContext the lifespan built (engine, ledger, keys, limiter, metrics)
Storefront             the Caller of any valid key (admin included: admin can do everything)
AuthorizedReservation  the path's reservation id, once the caller showed an admin key or that
                       reservation's X-Reservation-Token; otherwise 403

A route that needs the caller checked but not named lists `Depends(authenticate)` (any key) or
`Depends(require_admin)` (an admin key; a storefront key gets 403) in its `dependencies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Caller, KeyRing, ReservationTokens
from api.ledger import Ledger
from api.metrics import Metrics
from api.problems import ApiProblem
from api.ratelimit import RateLimiter
from api.settings import ApiSettings
from engine.engine import ReservationEngine
from engine.types import ID_PATTERN


@dataclass
class ApiContext:
    settings: ApiSettings
    engine: ReservationEngine
    ledger: Ledger
    keys: KeyRing
    tokens: ReservationTokens
    limiter: RateLimiter
    metrics: Metrics


async def get_ctx(request: Request) -> ApiContext:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on
    # every request (the profile of the API under load showed it as the largest cost).
    ctx: ApiContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:  # only when the app is served without its lifespan
        raise ApiProblem(503, "not_ready", "the API is starting up")
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from FLASHSALE_STOREFRONT_KEYS or FLASHSALE_ADMIN_KEYS.",
)


async def authenticate(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        sent = request.headers.get("authorization", "").strip()
        if sent and sent.split()[0].lower() != "bearer":
            # A key sent without its scheme: say what is missing, not that nothing came.
            raise _unauthenticated(
                "the Authorization header lacks the Bearer scheme (Authorization: Bearer <key>)"
            )
        raise _unauthenticated("an API key is required (Authorization: Bearer <key>)")
    caller = ctx.keys.identify(credentials.credentials)
    if caller is None:
        raise _unauthenticated("unknown API key")
    await ctx.limiter.hit("key", caller.key_id, ctx.settings.rate_limit_per_key)
    return caller


async def require_admin(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    if not caller.is_admin:
        raise ApiProblem(403, "forbidden", "this call needs an admin key")
    return caller


Storefront = Annotated[Caller, Depends(authenticate)]
ReservationId = Annotated[str, Path(pattern=ID_PATTERN.pattern, max_length=64)]
ReservationToken = Annotated[
    str | None,
    Header(
        alias="X-Reservation-Token",
        description="The reservation_token returned when the reservation was created "
        "(not needed with an admin key).",
        max_length=128,
    ),
]


async def authorize_reservation(
    reservation_id: ReservationId, ctx: Ctx, caller: Storefront, token: ReservationToken = None
) -> str:
    """A storefront key reaches a reservation only with that reservation's token."""
    if caller.is_admin or ctx.tokens.verify(reservation_id, token):
        return reservation_id
    if not token:
        raise ApiProblem(403, "forbidden", "X-Reservation-Token is required for this reservation")
    raise ApiProblem(403, "forbidden", "the reservation token does not match this reservation")


# The path's reservation id, once the caller has shown it may act on that reservation.
AuthorizedReservation = Annotated[str, Depends(authorize_reservation)]


def _unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})
