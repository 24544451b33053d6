"""The HTTP API's composition root: `create_app(settings)` builds it; nothing happens at import.

The lifespan builds the engine (Redis pool, scripts loaded) and the ledger's Postgres pool once
per worker process and closes both at shutdown; uvicorn drains requests in flight first.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import console, docs, handlers
from api.auth import KeyRing, ReservationTokens
from api.deps import ApiContext
from api.ledger import Ledger
from api.metrics import Metrics
from api.middleware import BodyLimitMiddleware, JsonBodyMiddleware, MetricsMiddleware
from api.openapi import install_openapi
from api.ratelimit import RateLimiter
from api.reserve_lane import ReserveLane
from api.routes import inventory, ops, reservations, skus, webhooks
from api.settings import ApiSettings
from engine.config import load_settings
from engine.engine import ReservationEngine
from engine.errors import ConfigurationError
from engine.runtime import tune_collector

log = logging.getLogger("flashsale.api")

DESCRIPTION = """\
Flash-sale reservations over Redis. Storefront keys reserve carts and read stock; admin keys
also configure SKUs, change stock, fulfil orders and read the ledger. Send the key as
`Authorization: Bearer <key>`. Acting on a reservation with a storefront key needs its
`X-Reservation-Token` (returned when it was created). Errors are `application/problem+json`.
"""


def create_app(settings: ApiSettings) -> FastAPI:
    if settings.redis_url is None:
        raise ConfigurationError("FLASHSALE_REDIS_URL: not set (start the services first)")
    metrics = Metrics()
    secret = settings.token_secret
    if not secret:
        # Tokens then die with the process and differ between workers: fine for a test, so
        # `flashsale serve` always sets one for all its workers.
        log.warning("FLASHSALE_TOKEN_SECRET unset: reservation tokens last this process only")
        secret = secrets.token_urlsafe(32)
    keys = KeyRing(settings.admin_key_list, settings.storefront_key_list)
    if not len(keys):
        log.warning("no API keys configured: every call that needs a key answers 401")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = ReservationEngine.from_settings(settings)
        ledger = Ledger(settings.database_url)
        try:
            await engine.start()
            await ledger.open()
            app.state.ctx = ApiContext(
                settings=settings,
                engine=engine,
                ledger=ledger,
                keys=keys,
                tokens=ReservationTokens(secret),
                limiter=RateLimiter(engine.redis, settings.rate_limit_window_seconds),
                metrics=metrics,
            )
            yield
        finally:
            app.state.ctx = None
            await ledger.close()
            await engine.aclose()

    app = FastAPI(
        title="flashsale",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from api/docs, with their assets served locally
        redoc_url=None,
        redirect_slashes=False,  # a redirect would turn a mistyped POST into a GET
        # FastAPI's native OpenTelemetry asks the global providers on every request whether it is
        # on (7% of a worker's time under load in the profile). /metrics is Prometheus; turn it
        # on with FLASHSALE_API_OPENTELEMETRY=true when an OpenTelemetry SDK is configured.
        telemetry=None
        if settings.api_opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    for router in (reservations.router, inventory.router, skus.router, ops.router):
        app.include_router(router)
    app.include_router(webhooks.router)
    handlers.install(app, metrics.refused)
    install_openapi(app, settings)
    docs.install(app)
    # Last added runs first: metrics see every response, including the body cap's 413; the
    # reserve lane, outermost, answers a well-formed reserve before all of them and counts it as
    # they would, handing anything else on.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    recorder = console.install(app, settings)
    if settings.api_reserve_lane:
        app.add_middleware(
            ReserveLane, metrics=metrics, recorder=recorder, max_body_bytes=settings.max_body_bytes
        )
    return app


def create_app_from_env() -> FastAPI:
    """Uvicorn's factory in each worker process: workers inherit settings through FLASHSALE_*."""
    app = create_app(load_settings(ApiSettings))
    # A process of its own that serves until it stops: what it built so far stays, and the
    # collector's default pace cost a reserve a tenth of its CPU (engine/runtime.py).
    tune_collector()
    return app
