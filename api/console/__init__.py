"""The launch console at /console: a live page for the people running a sale.

`install(app, settings)` adds its routes, the per-second stats middleware, and, around the app's
lifespan, the stats flusher and the live hub of this process (see stats.py and live.py).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from api.console.live import ConsoleFeed, LiveHub
from api.console.routes import router
from api.console.session import SessionSigner
from api.console.stats import StatsMiddleware, StatsRecorder
from api.settings import ApiSettings

UPDATE_INTERVAL_SECONDS = 1.0


@dataclass
class ConsoleState:
    signer: SessionSigner
    hub: LiveHub
    recorder: StatsRecorder


def install(
    app: FastAPI, settings: ApiSettings, interval: float = UPDATE_INTERVAL_SECONDS
) -> StatsRecorder:
    """Returns the recorder the stats middleware counts into (the reserve lane counts there too)."""
    recorder = StatsRecorder()
    signer = SessionSigner(settings.token_secret or secrets.token_urlsafe(32))
    app.include_router(router)
    app.add_middleware(StatsMiddleware, recorder=recorder)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            ctx = app.state.ctx
            feed = ConsoleFeed(ctx.engine, ctx.ledger)
            hub = LiveHub(feed.tick, feed.full, interval)
            app.state.console = ConsoleState(signer, hub, recorder)
            stop = asyncio.Event()
            flusher = asyncio.create_task(recorder.run(ctx.engine.redis, stop, interval))
            try:
                yield
            finally:
                app.state.console = None
                await hub.stop()
                stop.set()
                await flusher  # the last second's counts reach Redis before it closes

    app.router.lifespan_context = lifespan
    return recorder
