"""The OpenAPI document: every error response documented as application/problem+json.

FastAPI files a response model under the route's media type (application/json) and adds its own
422 schema; both are rewritten here once, so the document says what the server really sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.problems import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "No API key, or an unknown one",
    403: "Wrong role, or a missing or wrong X-Reservation-Token",
    404: "Unknown SKU, location or reservation",
    409: "Refused: insufficient stock, idempotency conflict, stale quantity, wrong state, …",
    410: "The reservation expired",
    413: "Request body too large",
    422: "Invalid request (validation)",
    429: "Purchase limit, hold cap or rate limit reached (Retry-After on rate limits)",
    503: "Redis or Postgres unavailable; retry",
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may answer these error statuses."""
    return {status: {"description": _DESCRIPTIONS[status]} for status in statuses}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_problems(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_problems(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
                    response.setdefault("description", _DESCRIPTIONS.get(int(status), "Error"))
                    if int(status) == 422:
                        response["description"] = _DESCRIPTIONS[422]
    # FastAPI's own validation-error models are no longer referenced.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema
