"""The load generator of engine-http, run as its own process so it does not share the API's CPU
time slices with the bench's event loop: `python -m loadtests.bench.http_driver <json>`.

Each buyer speaks HTTP/1.1 over its own kept-alive connection with a few lines of asyncio streams.
httpx was the first driver: at 99% of a core it managed ~450 requests/s while the API it drove sat
at 30%, so the figure measured the client, not the server.

First one client reserves one unit at a time on a SKU of its own (light-load latency, measured as
the in-process engine's is). Then, before selling, the buyers call /healthz for as long as the
sold-out phase lasts: the framework's floor. The API workers' CPU time (psutil, user + system) is
read at each phase's edges, so each phase's figure is API CPU per request served, unmoved by
whatever else the machine runs.

Prints one JSON document: both phases' counts and latencies, the available units between them,
the floor's requests, every phase's API CPU µs per request and the light-load percentiles. The
driver runs on uvloop, as the server does: the less CPU the client takes from the shared cores,
the more the figures are the server's.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psutil
import uvloop

from loadtests.bench.workload import Outcome, PhaseCounts, Workload, percentile_ms, run_phases


async def drive(job: dict[str, Any]) -> dict[str, Any]:
    workload = Workload(**job["workload"])
    storefront = {"Authorization": f"Bearer {job['storefront_key']}"}
    other: Counter[str] = Counter()  # refusals that are not "sold out", by status and code
    limits = httpx.Limits(
        max_connections=workload.buyers, max_keepalive_connections=workload.buyers
    )
    target = urlsplit(job["base_url"])
    host, port = target.hostname or "127.0.0.1", target.port or 80
    head = (
        f"POST /v1/reservations HTTP/1.1\r\nHost: {target.netloc}\r\n"
        f"Authorization: Bearer {job['storefront_key']}\r\nContent-Type: application/json\r\n"
    ).encode()
    trivial_request = f"GET /healthz HTTP/1.1\r\nHost: {target.netloc}\r\n\r\n".encode()
    connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    workers = [psutil.Process(pid) for pid in job["api_pids"]]

    me = psutil.Process()

    def api_cpu_s() -> float:
        return sum(sum(w.cpu_times()[:2]) for w in workers)

    def driver_cpu_s() -> float:
        return sum(me.cpu_times()[:2])

    def reserve_body(customer: str, sku: str) -> bytes:
        return orjson.dumps(
            {
                "customer_id": customer,
                "lines": [{"sku": sku, "quantity": 1}],
                "ttl_seconds": job["ttl_seconds"],
            }
        )

    async def post(buyer: int, rid: str, body: bytes) -> tuple[int, bytes]:
        request = (
            head + f"Idempotency-Key: {rid}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        return await exchange(buyer, request)

    async def exchange(buyer: int, request: bytes) -> tuple[int, bytes]:
        if buyer not in connections:
            connections[buyer] = await asyncio.open_connection(host, port)
        reader, writer = connections[buyer]
        writer.write(request)
        headers = await reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        for line in headers.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await reader.readexactly(length)

    async with httpx.AsyncClient(base_url=job["base_url"], limits=limits, timeout=60) as client:

        async def attempt(buyer: int, seq: int) -> Outcome:
            rid = f"{job['run_id']}-http-{buyer}-{seq}"
            body = reserve_body(f"b{buyer}", workload.sku)
            try:
                status, reply = await post(buyer, rid, body)
            except (OSError, asyncio.IncompleteReadError) as exc:  # counted, shown in the notes
                connections.pop(buyer, None)
                other[f"transport {type(exc).__name__}"] += 1
                return Outcome.REFUSED
            if status == 201:
                return Outcome.SOLD
            code = problem_code(reply)
            if status == 409 and code == "insufficient_stock":
                return Outcome.OUT
            other[f"{status} {code}"] += 1
            return Outcome.REFUSED

        async def light_load() -> list[int]:
            """Nanoseconds per reserve, one at a time on one connection (its own: -1)."""
            took = []
            warmup = job["light_warmup"]
            for n in range(warmup + job["light_calls"]):
                body = reserve_body(f"light{n}", job["light_sku"])
                start = time.perf_counter_ns()
                status, reply = await post(-1, f"{job['run_id']}-light-{n}", body)
                if status != 201:
                    raise RuntimeError(f"light-load reserve answered {status}: {reply!r}")
                if n >= warmup:
                    took.append(time.perf_counter_ns() - start)
            return sorted(took)

        light = await light_load()
        trivial = 0

        async def ask_trivial(buyer: int, stop_at: float) -> None:
            nonlocal trivial
            while time.perf_counter() < stop_at:
                status, _ = await exchange(buyer, trivial_request)
                if status != 200:
                    raise RuntimeError(f"/healthz answered {status}")
                trivial += 1

        cpu = [api_cpu_s()]
        own = [driver_cpu_s()]
        stop_at = time.perf_counter() + workload.soldout_seconds
        await asyncio.gather(*(ask_trivial(b, stop_at) for b in range(workload.buyers)))
        cpu.append(api_cpu_s())
        own.append(driver_cpu_s())

        async def available() -> int:
            cpu.append(api_cpu_s())  # the selling phase ends here
            own.append(driver_cpu_s())
            reply = await client.get(f"/v1/inventory/{workload.sku}", headers=storefront)
            reply.raise_for_status()
            left = int(reply.json()["total"]["available"])
            cpu.append(api_cpu_s())
            own.append(driver_cpu_s())
            return left

        selling, soldout, left = await run_phases(workload, attempt, available)
        cpu.append(api_cpu_s())
        own.append(driver_cpu_s())
    for _, writer in connections.values():
        writer.close()
    return {
        "selling": phase(selling),
        "soldout": phase(soldout),
        "available_after_selling": left,
        "trivial_requests": trivial,
        "api_cpu_us": {
            "trivial": per_request_us(cpu[1] - cpu[0], trivial),
            "reserve": per_request_us(cpu[2] - cpu[1], selling.attempts),
            "refusal": per_request_us(cpu[4] - cpu[3], soldout.attempts),
        },
        # The driver shares the cores: what it spends per request bounds what the API can show.
        "driver_cpu_us": {
            "trivial": per_request_us(own[1] - own[0], trivial),
            "reserve": per_request_us(own[2] - own[1], selling.attempts),
            "refusal": per_request_us(own[4] - own[3], soldout.attempts),
        },
        "light_load": {"p50_ms": percentile_ms(light, 0.5), "p99_ms": percentile_ms(light, 0.99)},
        "other_refusals": dict(other),
        "driver_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def problem_code(body: bytes) -> str | None:
    """The problem+json `code` of a refusal; None when the body is not one (a proxy's 502)."""
    try:
        code = orjson.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


def per_request_us(cpu_seconds: float, requests: int) -> float:
    return cpu_seconds * 1e6 / requests if requests else 0.0


def phase(counts: PhaseCounts) -> dict[str, Any]:
    return dict(counts.__dict__)


def main() -> None:
    job = orjson.loads(sys.argv[1])
    result = orjson.dumps(uvloop.run(drive(job)))
    # Written with os.write until all is out: after uvloop has run, a large write through
    # sys.stdout was seen to stop at 128 KiB or 256 KiB with no error, cutting the JSON short.
    os.set_blocking(1, True)
    out = memoryview(result)
    while out:
        out = out[os.write(1, out) :]


if __name__ == "__main__":
    main()
