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

from engine.errors import EngineError
from engine.types import ms_to_datetime

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Engine code -> HTTP status. Anything missing is a server fault (500).
ENGINE_STATUS: dict[str, int] = {
    "invalid_request": 422,
    "invalid_quantity": 422,
    "ttl_out_of_range": 422,
    "unknown_sku": 404,
    "unknown_location": 404,
    "reservation_not_found": 404,
    "insufficient_stock": 409,
    "idempotency_conflict": 409,
    "quantity_stale": 409,
    "invalid_state": 409,
    "extension_limit": 409,
    "over_fulfil": 409,
    "invariant_violation": 409,
    "sale_not_started": 409,
    "sale_ended": 409,
    "reservation_expired": 410,
    # Per-customer caps: the caller may succeed later, as with a rate limit.
    "purchase_limit_exceeded": 429,
    "too_many_holds": 429,
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
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
    }
    for key, value in (extra or {}).items():
        if key in _RESERVED:
            key = _RENAMED.get(key, f"engine_{key}")
        body[key] = value
    return ProblemResponse(body, status_code=status, headers=headers)


def engine_problem(exc: EngineError) -> ProblemResponse:
    status = ENGINE_STATUS.get(exc.code, 500)
    details = dict(exc.details)
    detail = details.pop("detail", None) or describe(exc.code, details) or str(exc)
    return problem(status, exc.code, str(detail), extra=details)


def describe(code: str, d: dict[str, Any]) -> str | None:
    """A sentence for a person; the machine reads the members."""
    at = f" at {d['location']}" if d.get("location") else ""
    texts = {
        "insufficient_stock": lambda: (
            f"only {d.get('available')} of {d.get('sku')} available{at}, "
            f"{d.get('requested')} requested"
        ),
        "purchase_limit_exceeded": lambda: (
            f"purchase limit of {d.get('limit')} for {d.get('sku')} reached; "
            f"{d.get('remaining')} more may be bought"
        ),
        "too_many_holds": lambda: f"at most {d.get('limit')} active holds on {d.get('sku')}",
        "sale_not_started": lambda: (
            f"the sale of {d.get('sku')} has not started: it opens at "
            f"{_when(d.get('sale_starts_at'))}"
        ),
        "sale_ended": lambda: (
            f"the sale of {d.get('sku')} has ended: it closed at {_when(d.get('sale_ends_at'))}"
        ),
        "unknown_sku": lambda: f"no SKU {d.get('sku')}",
        "unknown_location": lambda: f"SKU {d.get('sku')} has no location {d.get('location')}",
        "reservation_not_found": lambda: f"no reservation {d.get('reservation_id')}",
        "reservation_expired": lambda: (
            f"reservation {d.get('reservation_id')} expired at {_when(d.get('expired_at'))}"
        ),
        "invalid_state": lambda: (
            f"reservation {d.get('reservation_id')} is {d.get('status')}, "
            f"expected {d.get('expected')}"
        ),
        "extension_limit": lambda: (
            f"reservation {d.get('reservation_id')} may be extended {d.get('limit')} times"
        ),
        "idempotency_conflict": lambda: "this idempotency key was used for a different request",
        "over_fulfil": lambda: (
            f"{d.get('requested')} of {d.get('sku')}{at} requested, "
            f"{d.get('remaining')} left to fulfil"
        ),
        "quantity_stale": lambda: (
            f"on_hand of {d.get('sku')}{at} is {d.get('current')}, "
            f"not {d.get('expected')} (change_from_quantity)"
        ),
        "invalid_quantity": lambda: f"invalid quantity {d.get('quantity')} for {d.get('sku')}",
        "ttl_out_of_range": lambda: "ttl_seconds is outside the allowed range",
    }
    text = texts.get(code)
    return text() if text else None


def _when(ms: Any) -> str:
    try:
        return ms_to_datetime(int(ms)).isoformat()
    except (TypeError, ValueError):
        return str(ms)
