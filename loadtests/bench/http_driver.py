"""The load generator of engine-http, run as its own process so it does not share the API's CPU
time slices with the bench's event loop: `python -m loadtests.bench.http_driver <json>`.

Prints one JSON document: both phases' counts and latencies, the available units between them.
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections import Counter
from typing import Any

import httpx
import orjson

from loadtests.bench.workload import Outcome, PhaseCounts, Workload, run_phases


async def drive(job: dict[str, Any]) -> dict[str, Any]:
    workload = Workload(**job["workload"])
    storefront = {"Authorization": f"Bearer {job['storefront_key']}"}
    other: Counter[str] = Counter()  # refusals that are not "sold out", by status and code
    limits = httpx.Limits(
        max_connections=workload.buyers, max_keepalive_connections=workload.buyers
    )
    async with httpx.AsyncClient(base_url=job["base_url"], limits=limits, timeout=60) as client:

        async def attempt(buyer: int, seq: int) -> Outcome:
            rid = f"{job['run_id']}-http-{buyer}-{seq}"
            body = {
                "customer_id": f"b{buyer}",
                "lines": [{"sku": workload.sku, "quantity": 1}],
                "ttl_seconds": job["ttl_seconds"],
            }
            reply = await client.post(
                "/v1/reservations", json=body, headers={**storefront, "Idempotency-Key": rid}
            )
            if reply.status_code == 201:
                return Outcome.SOLD
            code = problem_code(reply)
            if reply.status_code == 409 and code == "insufficient_stock":
                return Outcome.OUT
            other[f"{reply.status_code} {code}"] += 1
            return Outcome.REFUSED

        async def available() -> int:
            reply = await client.get(f"/v1/inventory/{workload.sku}", headers=storefront)
            reply.raise_for_status()
            return int(reply.json()["total"]["available"])

        selling, soldout, left = await run_phases(workload, attempt, available)
    return {
        "selling": phase(selling),
        "soldout": phase(soldout),
        "available_after_selling": left,
        "other_refusals": dict(other),
        "driver_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def problem_code(reply: httpx.Response) -> str | None:
    """The problem+json `code` of a refusal; None when the body is not one (a proxy's 502)."""
    try:
        code = reply.json().get("code")
    except ValueError:
        return None
    return code if isinstance(code, str) else None


def phase(counts: PhaseCounts) -> dict[str, Any]:
    return dict(counts.__dict__)


def main() -> None:
    job = orjson.loads(sys.argv[1])
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(drive(job))))


if __name__ == "__main__":
    main()
