"""What a route needs, as FastAPI dependencies: the per-process context and the caller.

Ctx                    the ApiContext the lifespan built (engine, ledger, keys, limiter, metrics,
                       the shared readiness verdict)
Storefront             the Caller of any valid key (admin included: admin can do everything)
AuthorizedReservation  the path's reservation id and the incarnation the caller's
                       X-Reservation-Token names (None for an admin key), checked without Redis;
                       the engine checks the incarnation where its script acts (403 if the id
                       was reused since)
TokenIncarnation       for a route that reads the reservation anyway: the incarnation the
                       caller's token names (None for an admin key), checked against the read
                       with check_incarnation; a token forged or for another id is 403 at once

A route that needs the caller checked but not named lists `Depends(authenticate)` (any key) or
`Depends(require_admin)` (an admin key; a storefront key gets 403) in its `dependencies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from api.auth import Caller, KeyRing, ReservationTokens
from api.ledger import Ledger
from api.metrics import Metrics
from api.problems import TOKEN_MISMATCH, ApiProblem
from api.ratelimit import RateLimiter
from api.readiness import SharedProbe
from api.schemas.ops import ReadyOut
from api.settings import ApiSettings
from engine.engine import ReservationEngine
from engine.types import ID_PATTERN, Reservation


@dataclass
class ApiContext:
    settings: ApiSettings
    engine: ReservationEngine
    ledger: Ledger
    keys: KeyRing
    tokens: ReservationTokens
    limiter: RateLimiter
    metrics: Metrics
    readiness: SharedProbe[ReadyOut] = field(default_factory=SharedProbe)


def context(request: Request) -> ApiContext:
    """The ApiContext of the app serving `request` (503 while it starts up)."""
    ctx: ApiContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:  # only when the app is served without its lifespan
        raise ApiProblem(503, "not_ready", "the API is starting up")
    return ctx


async def get_ctx(request: Request) -> ApiContext:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on
    # every request (the profile of the API under load showed it as the largest cost).
    return context(request)


Ctx = Annotated[ApiContext, Depends(get_ctx)]


class _ApiKeyBearer(HTTPBearer):
    """The caller of any valid key (401 otherwise), counted against the key's rate limit.

    The Bearer scheme and the key check as one dependency, reading the context itself: FastAPI
    solves each nested dependency's parameters anew on every request, and three of them (scheme,
    context, check) were the largest share of a reserve's CPU time in the profile.
    """

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        ctx = context(request)
        caller = identify(ctx, request.headers.get("authorization"))
        await count_key(ctx, caller)
        return caller


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header; None for anything else.

    Read as FastAPI's HTTPBearer reads it (scheme up to the first space, any case), so the
    reserve lane and the dependency accept the same headers.
    """
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


def identify(ctx: ApiContext, authorization: str | None) -> Caller:
    """The caller of the key in this Authorization header; 401 without a known Bearer key."""
    key = bearer_key(authorization)
    if key is None:
        sent = (authorization or "").strip()
        if sent and sent.split()[0].lower() != "bearer":
            # A key sent without its scheme: say what is missing, not that nothing came.
            raise _unauthenticated(
                "the Authorization header lacks the Bearer scheme (Authorization: Bearer <key>)"
            )
        raise _unauthenticated("an API key is required (Authorization: Bearer <key>)")
    caller = ctx.keys.identify(key)
    if caller is None:
        raise _unauthenticated("unknown API key")
    return caller


async def count_key(ctx: ApiContext, caller: Caller) -> None:
    """Counts the request against the key's rate limit (429 past it)."""
    await ctx.limiter.hit("key", caller.key_id, ctx.settings.rate_limit_per_key)


# Named as FastAPI names a plain HTTPBearer, so the OpenAPI security scheme keeps its name.
authenticate = _ApiKeyBearer(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="An API key from FLASHSALE_STOREFRONT_KEYS or FLASHSALE_ADMIN_KEYS.",
)


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


async def token_incarnation(
    reservation_id: ReservationId, ctx: Ctx, caller: Storefront, token: ReservationToken = None
) -> str | None:
    """The incarnation a storefront caller's token names (None for an admin key).

    Checked without Redis: a guessed id or a forged token is refused before anything is read.
    """
    if caller.is_admin:
        return None
    incarnation = ctx.tokens.incarnation_of(reservation_id, token)
    if incarnation is not None:
        return incarnation
    if not token:
        raise ApiProblem(403, "forbidden", "X-Reservation-Token is required for this reservation")
    raise _token_mismatch()


TokenIncarnation = Annotated[str | None, Depends(token_incarnation)]


def check_incarnation(reservation: Reservation, incarnation: str | None) -> None:
    """403 unless the token was issued for this use of the id (an id is reused after retention)."""
    if incarnation is not None and reservation.incarnation != incarnation:
        raise _token_mismatch()


@dataclass(frozen=True, slots=True)
class ReservationAccess:
    """A reservation a caller may act on: an admin key (incarnation None), or a storefront key
    with a token for that id, whose incarnation the engine compares with the reservation's in
    the same script that acts (no read before, no window between)."""

    id: str
    incarnation: str | None


async def authorize_reservation(
    reservation_id: ReservationId, incarnation: TokenIncarnation
) -> ReservationAccess:
    return ReservationAccess(reservation_id, incarnation)


AuthorizedReservation = Annotated[ReservationAccess, Depends(authorize_reservation)]


def _token_mismatch() -> ApiProblem:
    return ApiProblem(403, "forbidden", TOKEN_MISMATCH)


def _unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})
