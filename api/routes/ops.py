"""Liveness, readiness and metrics: no key needed (keep them off the public listener)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Response
from redis.exceptions import RedisError

from api.deps import ApiContext, Ctx
from api.metrics import CONTENT_TYPE
from api.openapi import problem_responses
from api.problems import ApiProblem
from api.routes.webhooks import dispatcher_lag
from api.schemas.ops import HealthOut, PartitionLagOut, ReadyOut
from engine.fencing import FenceStatus
from engine.streams import PartitionLag, partition_lag

router = APIRouter(tags=["operations"])

# Past this the durable side is broken rather than busy (Redis streams grow, a restore would
# lose history): take the instance out of rotation so someone looks.
MAX_SYNC_LAG_MS = 5 * 60 * 1000
_METRICS_EXAMPLE = (
    'flashsale_http_requests_total{method="POST",route="/v1/reservations",status="201"} 1042.0\n'
    'flashsale_engine_refusals_total{code="insufficient_stock"} 17.0\n'
    'flashsale_stream_oldest_unsynced_age_seconds{partition="0"} 0.012\n'
    'flashsale_partition_fenced{partition="0"} 0.0\n'
)


@router.get("/healthz")
async def healthz() -> HealthOut:
    """Liveness: the process answers (checks nothing else, so a Redis outage restarts nothing)."""
    return HealthOut()


@router.get("/readyz", responses=problem_responses(503))
async def readyz(ctx: Ctx) -> ReadyOut:
    """Readiness: Redis runs a real script, Postgres answers, the sync worker keeps up.

    The verdict is shared for a second: concurrent and repeated calls cost one probe.
    """
    verdict = await ctx.readiness.get(lambda: _probe(ctx))
    if any(state != "ok" for state in verdict.checks.values()):
        raise ApiProblem(
            503,
            "not_ready",
            ", ".join(
                f"{name}: {state}" for name, state in verdict.checks.items() if state != "ok"
            ),
            checks=verdict.checks,
            partitions=[p.model_dump() for p in verdict.partitions],
            webhooks_lag_seconds=verdict.webhooks_lag_seconds,
        )
    return verdict


async def _probe(ctx: ApiContext) -> ReadyOut:
    checks: dict[str, str] = {}
    try:
        checks["redis"] = "ok" if await ctx.engine.ready() else "scripts not runnable"
    except RedisError as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    if ctx.ledger.configured:
        checks["postgres"] = "ok" if await ctx.ledger.ping() else "unavailable"
    webhooks_lag = await dispatcher_lag(ctx) if checks.get("postgres") == "ok" else None
    try:
        lag = await _lag(ctx) if checks["redis"] == "ok" else []
        states = {s.partition: s.state for s in await _states(ctx)} if lag else {}
    except RedisError as exc:  # gone between the two calls
        checks["redis"], lag, states = f"unavailable: {type(exc).__name__}", [], {}
    oldest = max((row.oldest_unsynced_age_ms for row in lag), default=0)
    checks["worker"] = "ok" if oldest <= MAX_SYNC_LAG_MS else f"lagging {oldest // 1000} s"
    partitions = [
        PartitionLagOut(
            partition=row.partition,
            length=row.length,
            pending=row.pending,
            oldest_unsynced_age_ms=row.oldest_unsynced_age_ms,
            state=states.get(row.partition),
        )
        for row in lag
    ]
    ready = all(state == "ok" for state in checks.values())
    return ReadyOut(
        status="ready" if ready else "not_ready",
        checks=checks,
        partitions=partitions,
        webhooks_lag_seconds=webhooks_lag,
        fenced=sorted(p for p, state in states.items() if state == "fenced"),
        recovering=sorted(p for p, state in states.items() if state == "recovering"),
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE: {"example": _METRICS_EXAMPLE}},
            "description": "Prometheus text format",
        }
    },
)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus: requests by route and status, latency, engine refusals, stream lag."""
    try:
        lag = await _lag(ctx)
        states = await _states(ctx)
    except RedisError:
        lag, states = [], []  # the request metrics are still worth a scrape while Redis is away
    return Response(ctx.metrics.render(lag, states), media_type=CONTENT_TYPE)


async def _lag(ctx: ApiContext) -> list[PartitionLag]:
    return await partition_lag(ctx.engine.redis, ctx.engine.keys)


async def _states(ctx: ApiContext) -> Sequence[FenceStatus]:
    return await ctx.engine.partition_states()
