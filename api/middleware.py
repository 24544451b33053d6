"""Pure ASGI middleware: the request body cap, JSON bodies only, and the request metrics.

Pure ASGI rather than BaseHTTPMiddleware: no extra task per request on the hot path.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import Metrics
from api.openapi import takes_json_body
from api.problems import problem

# Any token is a valid method to uvicorn: unknown ones share one label to bound the series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyLimitMiddleware:
    """Reads the whole body first and answers 413 past `max_bytes`.

    Bodies here are small JSON documents, so buffering costs little, and a refusal happens
    before any route or dependency runs (no half-read body, no work to undo).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later reads wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "body_too_large",
            f"request body larger than {self.max_bytes} bytes",
            extra={"max_bytes": self.max_bytes},
        )
        await response(scope, receive, send)


class JsonBodyMiddleware:
    """Answers 415 to a body that is not JSON on a route that takes a JSON body.

    FastAPI hands a text/plain or form body to the model as bytes (a 422 saying "valid
    dictionary", which sends the client looking in the wrong place) and reads a body without any
    Content-Type as JSON. JSON means `application/json` or `application/*+json`, parameters
    (charset) allowed. Routes that take no body, and requests without one, pass unchecked; which
    routes take one is the OpenAPI document's `requestBody`, looked up only for a body that is not
    JSON, so the hot path pays a header parse.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        if _is_json(content_type) or not takes_json_body(
            scope["app"], scope["method"], scope["path"]
        ):
            await self.app(scope, receive, send)
            return
        given = content_type or "none"
        response = problem(
            415,
            "unsupported_media_type",
            f"the request body must be JSON (Content-Type: application/json), not {given}",
            extra={"content_type": content_type, "accepted": ["application/json"]},
        )
        await response(scope, receive, send)


class MetricsMiddleware:
    """Counts every response by route template (not raw path: ids would explode the series)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.observe(method, template, status, time.perf_counter() - started)


def content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _has_body(scope: Scope) -> bool:
    length = content_length(scope)
    if length is not None:
        return length > 0
    return _header(scope, b"transfer-encoding") is not None  # chunked: a body of unknown size


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))
