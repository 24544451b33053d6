"""Exception handlers: every failure leaves as problem+json, and a client's mistake never as 5xx."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api.openapi import allowed_methods
from api.problems import STATUS_BY_ERROR, ApiProblem, engine_problem, problem
from engine.errors import EngineError
from engine.types import ID_PATTERN
from engine.validation import ID_RULE

log = logging.getLogger("flashsale.api")

_HTTP_CODES = {
    400: "malformed_body",  # FastAPI's answer to a body it cannot decode (not UTF-8, …)
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def install(app: FastAPI, on_refusal: Callable[[str], None]) -> None:
    """Register the handlers; `on_refusal(code)` counts engine refusals for /metrics."""

    async def engine_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EngineError)
        on_refusal(exc.code)
        response = engine_problem(exc)
        if type(exc) not in STATUS_BY_ERROR:  # a refusal the API does not know: a bug
            log.error("unexpected engine error on %s: %s", request.url.path, exc)
        return response

    async def api_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem(exc.status, exc.code, exc.detail, headers=exc.headers, extra=exc.extra)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [_slim(e) for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        detail = f"{where}: {first['msg']}{more}"
        return problem(422, "validation_failed", detail, extra={"errors": errors})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        code = _HTTP_CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
        headers = dict(exc.headers or {})
        if status == 405:
            headers["Allow"] = allowed_methods(app, request.url.path) or headers.get("Allow", "")
        return problem(status, code, str(exc.detail), headers=headers)

    async def redis_error(request: Request, exc: Exception) -> Response:
        # Redis down or failing over: the caller should retry, not treat it as a bug.
        log.warning("redis unavailable on %s: %s", request.url.path, exc)
        return problem(
            503,
            "redis_unavailable",
            "the stock store is unavailable, retry shortly",
            headers={"Retry-After": "1"},
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "an unexpected error occurred")

    app.add_exception_handler(EngineError, engine_error)
    app.add_exception_handler(ApiProblem, api_problem)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RedisError, redis_error)
    app.add_exception_handler(Exception, server_error)


def _slim(error: Any) -> dict[str, Any]:
    # Drop `input` (it echoes the caller's data, possibly large) and `ctx` (may hold exceptions).
    return {"loc": list(error.get("loc", ())), "msg": _message(error), "type": error.get("type")}


def _message(error: Any) -> Any:
    ctx = error.get("ctx") or {}
    if error.get("type") == "string_pattern_mismatch" and ctx.get("pattern") == ID_PATTERN.pattern:
        return f"must be {ID_RULE}"  # the rule in words; the regex is in the OpenAPI document
    return error.get("msg")
