"""The OpenAPI document: every error response documented as application/problem+json.

FastAPI files a response model under the route's media type (application/json) and adds its own
422 schema; both are rewritten here once, so the document says what the server really sends.
The limits that come from settings (quantity per line, lines per cart, TTL range) are written in
too: the models are static, but a client should read this deployment's limits.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.problems import PROBLEM_MEDIA_TYPE, Problem
from api.settings import ApiSettings

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "No API key, or an unknown one",
    403: "Wrong role, or a missing or wrong X-Reservation-Token",
    404: "Unknown SKU, location or reservation",
    409: "Refused: insufficient stock, purchase limit or hold cap reached, idempotency conflict, "
    "stale quantity, wrong state, …",
    410: "The reservation expired",
    413: "Request body too large",
    415: "The body is not JSON: send Content-Type: application/json",
    422: "Invalid request (validation)",
    429: "Rate limit reached; retry after Retry-After seconds",
    503: "Redis or Postgres unavailable; retry",
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may answer these error statuses."""
    return {status: {"description": _DESCRIPTIONS[status]} for status in statuses}


def install_openapi(app: FastAPI, settings: ApiSettings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _with_limits(_with_problems(schema), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_problems(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if "requestBody" in operation:  # JsonBodyMiddleware refuses any other media type
                operation["responses"].setdefault("415", {"description": _DESCRIPTIONS[415]})
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


def _with_limits(schema: dict[str, Any], settings: ApiSettings) -> dict[str, Any]:
    models = schema["components"]["schemas"]
    models["CartLineIn"]["properties"]["quantity"]["maximum"] = settings.max_quantity_per_line
    models["ReserveIn"]["properties"]["lines"]["maxItems"] = settings.max_lines_per_cart
    for model in ("ReserveIn", "ExtendIn"):
        for branch in models[model]["properties"]["ttl_seconds"]["anyOf"]:
            if branch.get("type") == "integer":
                branch["minimum"] = settings.hold_ttl_min_seconds
                branch["maximum"] = settings.hold_ttl_max_seconds
    return schema


def allowed_methods(app: FastAPI, path: str) -> str | None:
    """The `Allow` of a 405: every method the document declares for the path.

    Starlette names only the first route that matched the path, which for /v1/reservations/{id}
    (GET and DELETE are two routes) would leave one out.
    """
    operations = _operations(app, path)
    if operations is None:
        return None
    methods = {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods))


def takes_json_body(app: FastAPI, method: str, path: str) -> bool:
    """Whether the document declares a JSON request body for this method and path."""
    operation = (_operations(app, path) or {}).get(method.lower(), {})
    return "application/json" in operation.get("requestBody", {}).get("content", {})


def _operations(app: FastAPI, path: str) -> dict[str, Any] | None:
    for template, operations in app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\{[^/}]+\}", "[^/]+", template), path):
            return dict(operations)
    return None
