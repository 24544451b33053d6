"""A process that drives one operation on a cart spanning partitions and dies (os._exit) at a
named fault point: the fault-point tests run it, then check what recovery makes of what it left.

    python tests/cart_driver.py '<json: url, cluster, partitions, clock_offset_ms, point, op, ...>'

Exit status: 17 when it died at the point, 0 when the operation ended without passing it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from engine import CartLine, ReservationEngine
from engine.connection import connect_url
from engine.errors import EngineError
from flashsale.settings import Settings

DIED = 17


def _die_at(point: str) -> Any:
    def hook(reached: str) -> None:
        if reached == point:
            os._exit(DIED)  # no cleanup, no finally: as a killed process

    return hook


async def main(spec: dict[str, Any]) -> None:
    settings = Settings(
        redis_url=spec["url"],
        database_url=None,
        redis_cluster=spec["cluster"],
        partitions=spec["partitions"],
        cart_recovery_seconds=spec["cart_recovery_seconds"],
    )
    engine = ReservationEngine(connect_url(spec["url"], cluster=spec["cluster"]), settings)
    await engine.start()
    engine.clock_offset_ms = spec["clock_offset_ms"]
    engine.fault_hook = _die_at(spec["point"])
    rid = spec["reservation_id"]
    try:
        if spec["op"] == "reserve":
            lines = [CartLine(sku, qty) for sku, qty in spec["lines"]]
            await engine.reserve(rid, spec["customer_id"], lines, spec["ttl_seconds"])
        elif spec["op"] == "commit":
            await engine.commit(rid, spec["order_id"])
        elif spec["op"] == "release":
            await engine.release(rid)
        else:
            raise SystemExit(f"unknown op {spec['op']!r}")
    except EngineError as exc:  # a refusal is an answer: the point was not on its way
        print(f"refused: {exc}", file=sys.stderr)
    finally:
        await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
