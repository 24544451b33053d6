"""/console: the launch console's page, its login session, its live stream and its SKU reads.

The page is static (static/); everything it shows comes from /console/api/*, which answers only
to a valid session cookie. A session starts by posting an admin key once: the key never stays in
the page, and the cookie (HttpOnly, SameSite=Strict, signed, expiring) can't be read by a script
nor sent by another site.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from api.console import ledger_reads
from api.console.live import LiveHub
from api.console.session import COOKIE_NAME, COOKIE_PATH, Session, SessionSigner
from api.deps import Ctx
from api.problems import ApiProblem
from api.routes.skus import sku_detail
from engine.types import ID_PATTERN

STATIC_DIR = Path(__file__).parent / "static"
# Only this server's own files, scripts and styles: nothing from elsewhere, no inline script.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(prefix="/console", include_in_schema=False)


def console_state(request: Request) -> tuple[SessionSigner, LiveHub]:
    state = getattr(request.app.state, "console", None)
    if state is None:
        raise ApiProblem(503, "not_ready", "the API is starting up")
    signer: SessionSigner = state.signer
    hub: LiveHub = state.hub
    return signer, hub


async def require_session(
    request: Request, cookie: Annotated[str | None, Cookie(alias=COOKIE_NAME)] = None
) -> Session:
    signer, _ = console_state(request)
    session = signer.verify(cookie)
    if session is None:
        raise ApiProblem(401, "unauthenticated", "log in to the console with an admin key")
    return session


Signed = Annotated[Session, Depends(require_session)]


class LoginIn(BaseModel):
    key: str = Field(min_length=1, max_length=512)


@router.get("")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


@router.get("/static/{name}")
async def static(name: Annotated[str, PathParam(pattern=r"^[a-z]+\.(js|css|svg)$")]) -> Response:
    path = STATIC_DIR / name
    if not path.is_file():
        raise ApiProblem(404, "not_found", f"no console file {name}")
    return FileResponse(
        path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    )


@router.post("/api/login", status_code=204)
async def login(body: LoginIn, request: Request, ctx: Ctx) -> Response:
    caller = ctx.keys.identify(body.key)
    if caller is None:
        raise ApiProblem(401, "unauthenticated", "unknown API key")
    if not caller.is_admin:
        raise ApiProblem(403, "forbidden", "the console needs an admin key")
    signer, _ = console_state(request)
    response = Response(status_code=204)
    response.set_cookie(
        COOKIE_NAME,
        signer.issue(caller.key_id),
        max_age=signer.lifetime_seconds,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/api/logout", status_code=204)
async def logout(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/api/session")
async def session(signed: Signed) -> dict[str, Any]:
    return {"key_id": signed.key_id, "expires_at": signed.expires_at}


@router.get("/api/stream")
async def stream(request: Request, signed: Signed) -> StreamingResponse:
    """Server-Sent Events: a full update first, then one per interval until the page closes."""
    _, hub = console_state(request)

    async def events() -> AsyncIterator[bytes]:
        async with hub.subscribe() as queue:
            yield f"retry: {int(hub.interval * 3000)}\n\n".encode()
            while True:
                yield await queue.get()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/api/skus/{sku}")
async def sku_page(
    sku: Annotated[str, PathParam(pattern=ID_PATTERN.pattern, max_length=64)],
    ctx: Ctx,
    signed: Signed,
) -> dict[str, Any]:
    """Configuration and levels, the latest ledger rows and threshold events (null: no ledger)."""
    detail = sku_detail(await ctx.engine.inventory(sku))
    rows = await ledger_reads.sku_rows(ctx.ledger, sku, None, 25)
    thresholds = await ledger_reads.sku_rows(ctx.ledger, sku, ledger_reads.THRESHOLD_TYPES, 20)
    return {
        **detail.model_dump(mode="json"),
        "transactions": rows,
        "threshold_events": thresholds,
    }
