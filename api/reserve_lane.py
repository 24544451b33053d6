"""POST /v1/reservations without the framework's per-request machinery: the busiest route.

A pure ASGI layer in front of the app's own middleware answers a well-formed reserve itself: the
same key check, the same models (ReserveIn in, ReservationOut out, serialised as FastAPI
serialises a response model), the same handler code (`hold_cart`) and the app's own exception
handlers for its refusals. It does for what it answers what the layers behind it do for every
request: the same metrics and console figures, and only a body within the cap, sent as JSON.
What it skips is FastAPI's routing over every route, its request and exit-stack wrappers,
dependency solving and the middleware chain: most of a reserve's CPU time in a worker's profile,
and most of a sold-out refusal's.

Anything it would not answer exactly as the route does goes on to the app untouched: another
method or path, a missing or unknown key, a header or body that does not validate, an unusual
Content-Type, a body past the cap. So every client mistake keeps the app's own problem document,
and the lane has no error path of its own to drift. The route stays declared in FastAPI: OpenAPI
documents it, and it serves every request with the lane off (FLASHSALE_API_RESERVE_LANE=false).
"""

from __future__ import annotations

import time

import orjson
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Caller
from api.console.stats import StatsRecorder
from api.deps import ApiContext, bearer_key, count_key
from api.metrics import Metrics
from api.middleware import content_length
from api.routes.reservations import hold_cart, reservation_out, reserve, router
from api.schemas.common import Id
from api.schemas.reservations import ReserveIn

PATH = "/v1/reservations"
# The route's Idempotency-Key header has the constraints of an Id: checked by the same type.
_IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(Id)
_ROUTE = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is reserve)


class ReserveLane:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, recorder: StatsRecorder, max_body_bytes: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.recorder = recorder
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self.app(scope, receive, send)  # the body cap answers, unread
            return
        started = time.perf_counter()
        body, stopped = await _read_body(receive, self.max_body_bytes)
        request = self._admissible(scope, body) if stopped is None else None
        if request is None:
            await self.app(scope, _replay(body, stopped, receive), send)
            return
        status = 500  # what the metrics count if a bug escapes to the server-error handler
        try:
            response = await self._answer(scope, *request)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe("POST", _ROUTE.path, status, elapsed)
        code = None
        if status >= 400:
            code = orjson.loads(response.body).get("code")
        self.recorder.reserve_answered(status, code, elapsed)

    async def _answer(
        self,
        scope: Scope,
        ctx: ApiContext,
        caller: Caller,
        reserve_in: ReserveIn,
        idempotency_key: str | None,
    ) -> Response:
        try:
            await count_key(ctx, caller)
            held = await hold_cart(ctx, reserve_in, idempotency_key)
            if isinstance(held, Response):
                response = held
            else:
                out = reservation_out(ctx, held)
                response = Response(
                    out.model_dump_json(by_alias=True),
                    status_code=200 if held.replayed else 201,
                    media_type="application/json",
                )
        except Exception as exc:
            response = await _handled(scope, exc)
        return response

    def _admissible(
        self, scope: Scope, body: bytes
    ) -> tuple[ApiContext, Caller, ReserveIn, str | None] | None:
        """What the route would act on, when the request is one the lane answers as it would."""
        ctx: ApiContext | None = getattr(scope["app"].state, "ctx", None)
        if ctx is None or scope.get("root_path") or not body:
            return None
        authorization = content_type = idempotency_key = None
        for name, value in scope["headers"]:
            # First occurrence of each, as Starlette's Headers.get reads them.
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"idempotency-key" and idempotency_key is None:
                idempotency_key = value.decode("latin-1")
        if content_type is None or content_type.split(b";", 1)[0].strip().lower() != (
            b"application/json"
        ):
            return None
        key = bearer_key(authorization)
        caller = None if key is None else ctx.keys.identify(key)
        if caller is None:
            return None
        try:
            if idempotency_key is not None:
                idempotency_key = _IDEMPOTENCY_KEY.validate_python(idempotency_key)
            # orjson accepts less than the json module FastAPI parses with (no NaN, UTF-8 only),
            # never more: whatever it refuses, FastAPI answers.
            reserve_in = ReserveIn.model_validate(orjson.loads(body))
        except (ValidationError, orjson.JSONDecodeError):
            return None
        return ctx, caller, reserve_in, idempotency_key


async def _read_body(receive: Receive, max_bytes: int) -> tuple[bytes, Message | None]:
    """The whole body; or what was read and the message that stopped the reading, for the app
    to see: a disconnect, or the part of a body past `max_bytes` (the cap then answers)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks), message
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, stopped: Message | None, receive: Receive) -> Receive:
    """What was read, as the app would have received it, then the rest from the client."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if stopped is not None:
        pending = [stopped, {"type": "http.request", "body": body, "more_body": True}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


async def _handled(scope: Scope, exc: Exception) -> Response:
    """The response the app's exception handler for `exc` builds, as the route's would be.

    Exception itself is the server-error handler's, outside all middleware: re-raised, it reaches
    that handler exactly as a route's unexpected error does.
    """
    handlers = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = handlers.get(cls)
        if handler is not None:
            response: Response = await handler(Request(scope), exc)
            return response
    raise exc
