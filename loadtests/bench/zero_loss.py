"""engine-ack: the engine in zero-loss mode (each write waits for a replica), next to `engine`.

Both rows run on the same primary with the same replica attached, so the only difference is the
WAIT behind each script call: the figures price the mode, not the replication itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from engine.config import EngineSettings
from loadtests.bench.workload import DesignResult

S = TypeVar("S", bound=EngineSettings)

DESIGN = "engine-ack"
REPLICAS_ACK = 1


class NoReplica(ValueError):
    """engine-ack asked for on a Redis that has no replica to wait for."""


def ack_settings(settings: S) -> S:
    return settings.model_copy(update={"redis_min_replicas_ack": REPLICAS_ACK})


async def connected_replicas(redis_url: str) -> int:
    async with Redis.from_url(redis_url) as redis:
        info = await redis.info("replication")
    return int(info.get("connected_slaves", 0))


async def require_replica(redis_url: str) -> int:
    replicas = await connected_replicas(redis_url)
    if replicas < REPLICAS_ACK:
        raise NoReplica(
            f"{DESIGN} waits for {REPLICAS_ACK} replica(s), and this Redis has {replicas}: "
            "attach one, or leave the design out"
        )
    return replicas


@dataclass(frozen=True)
class ZeroLossCost:
    """engine-ack against engine, measured in the same run on the same primary and replica."""

    replicas: int  # replicas attached to the primary during both rows
    replicas_ack: int  # WAIT for this many
    ack_timeout_ms: int
    engine_per_s: float
    ack_per_s: float
    ratio: float  # engine-ack attempts/s ÷ engine's
    engine_p50_ms: float
    ack_p50_ms: float
    engine_p99_ms: float
    ack_p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost(
    results: list[DesignResult], replicas: int, settings: EngineSettings
) -> ZeroLossCost | None:
    rows = {r.design: r for r in results}
    engine, ack = rows.get("engine"), rows.get(DESIGN)
    if engine is None or ack is None or not engine.attempts_per_s:
        return None
    return ZeroLossCost(
        replicas=replicas,
        replicas_ack=REPLICAS_ACK,
        ack_timeout_ms=settings.redis_replicas_ack_timeout_ms,
        engine_per_s=engine.attempts_per_s,
        ack_per_s=ack.attempts_per_s,
        ratio=ack.attempts_per_s / engine.attempts_per_s,
        engine_p50_ms=engine.p50_ms,
        ack_p50_ms=ack.p50_ms,
        engine_p99_ms=engine.p99_ms,
        ack_p99_ms=ack.p99_ms,
    )


def lines(zero_loss: ZeroLossCost | None) -> list[str]:
    if zero_loss is None:
        return []
    z = zero_loss
    return [
        f"zero-loss mode ({DESIGN}: WAIT for {z.replicas_ack} replica after each script call, "
        f"{z.replicas} attached to the primary in both rows): {z.ack_per_s:,.0f} reserves/s "
        f"against engine's {z.engine_per_s:,.0f} (× {z.ratio:.2f}); p50 {z.ack_p50_ms:.2f} ms "
        f"against {z.engine_p50_ms:.2f} ms, p99 {z.ack_p99_ms:.2f} ms against "
        f"{z.engine_p99_ms:.2f} ms"
    ]
