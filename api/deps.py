"""What a route needs, as FastAPI dependencies: the per-process context and the caller.

Ctx         the ApiContext the lifespan built (engine, ledger, keys, limiter, metrics)
Storefront  any valid key (admin included: admin can do everything)
Admin       an admin key; a storefront key gets 403
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Caller, KeyRing, ReservationTokens
from api.ledger import Ledger
from api.metrics import Metrics
from api.problems import ApiProblem
from api.ratelimit import RateLimiter
from engine.config import Settings
from engine.engine import ReservationEngine


@dataclass
class ApiContext:
    settings: Settings
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
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    if credentials is None:
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
Admin = Annotated[Caller, Depends(require_admin)]
ReservationToken = Annotated[
    str | None,
    Header(
        alias="X-Reservation-Token",
        description="The reservation_token returned when the reservation was created "
        "(not needed with an admin key).",
        max_length=128,
    ),
]


def authorize_reservation(
    ctx: ApiContext, caller: Caller, reservation_id: str, token: str | None
) -> None:
    """A storefront key reaches a reservation only with that reservation's token."""
    if caller.is_admin or ctx.tokens.verify(reservation_id, token):
        return
    if not token:
        raise ApiProblem(403, "forbidden", "X-Reservation-Token is required for this reservation")
    raise ApiProblem(403, "forbidden", "the reservation token does not match this reservation")


def _unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})
