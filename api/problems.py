"""Every error the API sends is `application/problem+json` (RFC 9457).

    {"type": "urn:flashsale:problem:insufficient_stock", "title": "Insufficient stock",
     "status": 409, "detail": "only 2 of s1 available at wh-1, 3 requested",
     "code": "insufficient_stock", "sku": "s1", "location": "wh-1", "requested": 3, "available": 2}

`code` is the engine's error code (or one of the API's own: unauthenticated, forbidden,
rate_limited, validation_failed, not_found, …); the engine error's details follow as members.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from engine import errors
from engine.errors import EngineError

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Refusal -> HTTP status. Anything missing is a server fault (500).
STATUS_BY_ERROR: dict[type[EngineError], int] = {
    errors.InvalidRequest: 422,
    errors.InvalidQuantity: 422,
    errors.TtlOutOfRange: 422,
    errors.QuantityTooLarge: 422,
    errors.PlacementGroupFixed: 422,
    errors.UnknownSku: 404,
    errors.UnknownLocation: 404,
    errors.ReservationNotFound: 404,
    errors.InsufficientStock: 409,
    errors.IdempotencyConflict: 409,
    errors.QuantityStale: 409,
    errors.InvalidState: 409,
    errors.ExtensionLimit: 409,
    errors.OverFulfil: 409,
    errors.BackorderNotInStock: 409,
    errors.InvariantViolation: 409,
    errors.SaleNotStarted: 409,
    errors.SaleEnded: 409,
    # Per-customer caps conflict with what the customer already holds or bought: waiting lifts
    # neither (releasing a hold does), so not 429, which clients and proxies retry on a timer.
    # 429 is the rate limiter's alone.
    errors.PurchaseLimitExceeded: 409,
    errors.TooManyHolds: 409,
    errors.ReservationExpired: 410,
    errors.IncarnationMismatch: 403,  # answered as a token mismatch (engine_problem)
    # Not the client's fault and not final: the same request succeeds once the partition's
    # Redis is verified (Retry-After), or, fenced, once an operator restored it.
    errors.PartitionRecovering: 503,
    # Zero-loss mode: too few replicas confirmed the write; retrying the same request replays it.
    errors.NotReplicated: 503,
}
# Seconds a client should wait before retrying a refusal that lifts by itself.
RETRY_AFTER: dict[type[EngineError], str] = {
    errors.PartitionRecovering: "1",
    errors.NotReplicated: "1",
}
FENCED_RETRY_AFTER = "30"  # a fenced partition waits for a restore: minutes, not a moment
# The same table by the code the problem documents carry.
ENGINE_STATUS: dict[str, int] = {cls.code: status for cls, status in STATUS_BY_ERROR.items()}

# A problem's `title` per code, written as a title; a code missing here gets its words capitalized.
TITLES: dict[str, str] = {
    # the engine's refusals
    "invalid_request": "Invalid request",
    "invalid_quantity": "Invalid quantity",
    "ttl_out_of_range": "TTL out of range",
    "unknown_sku": "Unknown SKU",
    "unknown_location": "Unknown location",
    "insufficient_stock": "Insufficient stock",
    "purchase_limit_exceeded": "Purchase limit exceeded",
    "too_many_holds": "Too many active holds",
    "sale_not_started": "Sale not started",
    "sale_ended": "Sale ended",
    "reservation_not_found": "Reservation not found",
    "reservation_expired": "Reservation expired",
    "invalid_state": "Reservation in another state",
    "extension_limit": "Extension limit reached",
    "idempotency_conflict": "Idempotency conflict",
    "over_fulfil": "More than committed fulfilled",
    "quantity_stale": "Stale on-hand quantity",
    "invariant_violation": "Stock invariant violated",
    "quantity_too_large": "Quantity too large",
    "backorder_not_in_stock": "Backorder not in stock",
    "placement_group_fixed": "Placement group fixed",
    "incarnation_mismatch": "Token for an earlier reservation",
    "partition_recovering": "Partition recovering",
    "not_replicated": "Not replicated",
    # the API's own
    "unauthenticated": "Unauthenticated",
    "forbidden": "Forbidden",
    "rate_limited": "Rate limited",
    "validation_failed": "Validation failed",
    "malformed_body": "Malformed body",
    "body_too_large": "Body too large",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "not_ready": "Not ready",
    "unsupported_media_type": "Unsupported media type",
    "ledger_unavailable": "Ledger unavailable",
    "redis_unavailable": "Redis unavailable",
    "internal_error": "Internal error",
}

# Members RFC 9457 reserves; an engine detail of the same name is renamed rather than lost.
_RESERVED = {"type", "title", "status", "detail", "code", "instance"}
_RENAMED = {"status": "reservation_status"}  # invalid_state's status is the reservation's


class Problem(BaseModel):
    """An RFC 9457 problem; extra members carry the refusal's machine-readable details."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:flashsale:problem:insufficient_stock",
                    "title": "Insufficient stock",
                    "status": 409,
                    "detail": "only 2 of s1 available at wh-1, 3 requested",
                    "code": "insufficient_stock",
                    "sku": "s1",
                    "location": "wh-1",
                    "requested": 3,
                    "available": 2,
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    code: str


class ApiProblem(Exception):
    """A refusal decided by the API itself (auth, rate limit, ledger unavailable, …)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        # default=str: a detail that is not JSON (it should not happen) must not turn into a 500.
        return orjson.dumps(content, default=str)


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": f"urn:flashsale:problem:{code}",
        "title": title(code),
        "status": status,
        "detail": detail,
        "code": code,
    }
    for key, value in (extra or {}).items():
        if key in _RESERVED:
            key = _RENAMED.get(key, f"engine_{key}")
        body[key] = value
    return ProblemResponse(body, status_code=status, headers=headers)


def title(code: str) -> str:
    return TITLES.get(code) or code.replace("_", " ").capitalize()


# A token issued for an earlier use of the id: the engine finds it where the script acts, and the
# caller is told exactly what a token the API itself finds wrong tells it.
TOKEN_MISMATCH = (
    "the reservation token does not match this reservation (was it issued by a server with "
    "another FLASHSALE_TOKEN_SECRET?)"
)


def engine_problem(exc: EngineError) -> ProblemResponse:
    if isinstance(exc, errors.IncarnationMismatch):
        return problem(403, "forbidden", TOKEN_MISMATCH)
    status = STATUS_BY_ERROR.get(type(exc), 500)
    details = exc.details
    details.pop("detail", None)  # the sentence carries it; a member would repeat it
    retry_after = RETRY_AFTER.get(type(exc))
    if isinstance(exc, errors.PartitionRecovering) and exc.fenced:
        retry_after = FENCED_RETRY_AFTER
    headers = {"Retry-After": retry_after} if retry_after else None
    # The same sentence the CLI prints: each refusal class words its own.
    return problem(status, exc.code, str(exc), headers=headers, extra=details)
