"""engine-http: the API in its own processes (started by the caller's `start_api`), driven by
http_driver in another."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import psutil

from engine.config import EngineSettings
from loadtests.bench.redis_designs import HOLD_TTL_S, LOCATION
from loadtests.bench.workload import PhaseCounts, Workload

API_WORKERS = 2  # `flashsale bench --api-workers N` measures others
RATE_LIMIT_NEVER_REACHED = 1_000_000_000
LIGHT_LOAD_WARMUP = 50


def light_load_calls(workload: Workload) -> int:
    """Sequential reserves for the light-load probe: a tenth of the units, 100 to 2 000."""
    return min(2_000, max(100, workload.units // 10))


@dataclass(frozen=True)
class ApiProcess:
    """A running API: where it answers, the pid whose workers' memory counts, its log."""

    base_url: str
    pid: int
    log: Path


@dataclass(frozen=True)
class ApiCpu:
    """The API workers' CPU µs per request served: the floor (/healthz), reserve, refusal; and
    a reserve's latency over HTTP at light load (one client, sequential)."""

    trivial_us: float
    reserve_us: float
    refusal_us: float
    trivial_requests: int
    # The load generator's own CPU per request, phase by phase: it shares the cores.
    driver_trivial_us: float = 0.0
    driver_reserve_us: float = 0.0
    driver_refusal_us: float = 0.0
    light_load_calls: int = 0
    light_load_p50_ms: float = 0.0
    light_load_p99_ms: float = 0.0

    @property
    def reserve_ratio(self) -> float:
        return self.reserve_us / self.trivial_us if self.trivial_us else 0.0

    @property
    def refusal_ratio(self) -> float:
        return self.refusal_us / self.trivial_us if self.trivial_us else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "trivial_us": self.trivial_us,
            "reserve_us": self.reserve_us,
            "refusal_us": self.refusal_us,
            "reserve_per_trivial": self.reserve_ratio,
            "refusal_per_trivial": self.refusal_ratio,
            "trivial_requests": self.trivial_requests,
            "driver_trivial_us": self.driver_trivial_us,
            "driver_reserve_us": self.driver_reserve_us,
            "driver_refusal_us": self.driver_refusal_us,
            "light_load_calls": self.light_load_calls,
            "light_load_p50_ms": self.light_load_p50_ms,
            "light_load_p99_ms": self.light_load_p99_ms,
        }


# Starts the API with these FLASHSALE_* variables over the current environment and this many
# workers; returns once it answers and stops it on exit.
StartApi = Callable[[Mapping[str, str], int], AbstractContextManager[ApiProcess]]


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the kernel's own high-water mark of the process' resident set."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def run(
    settings: EngineSettings,
    redis_url: str,
    database_url: str,
    workload: Workload,
    run_id: str,
    start_api: StartApi,
    api_workers: int = API_WORKERS,
) -> tuple[PhaseCounts, PhaseCounts, int, float, str, ApiCpu]:
    """Returns both phases, available after selling, the API workers' peak RSS (MiB), a note,
    and the API's CPU per request."""
    admin, storefront = f"adm_{secrets.token_urlsafe(16)}", f"sf_{secrets.token_urlsafe(16)}"
    env = {
        "FLASHSALE_REDIS_URL": redis_url,
        "FLASHSALE_DATABASE_URL": database_url,
        "FLASHSALE_PARTITIONS": str(settings.partitions),  # the server must name keys as we do
        "FLASHSALE_ADMIN_KEYS": admin,
        "FLASHSALE_STOREFRONT_KEYS": storefront,
        "FLASHSALE_TOKEN_SECRET": secrets.token_urlsafe(32),
        # Counted as in production (the limiter's round trip is part of a reserve's cost), at a
        # limit no buyer reaches: every buyer asks far more often than a storefront would allow.
        "FLASHSALE_RATE_LIMIT_PER_CUSTOMER": str(RATE_LIMIT_NEVER_REACHED),
        "FLASHSALE_RATE_LIMIT_PER_KEY": "0",
    }
    with start_api(env, api_workers) as api:
        light_calls = light_load_calls(workload)
        light_sku = f"{workload.sku}-light"
        async with httpx.AsyncClient(base_url=api.base_url) as client:
            for sku, units in (
                (workload.sku, workload.units),
                (light_sku, light_calls + LIGHT_LOAD_WARMUP),  # never sold out by the probe
            ):
                body = {"locations": [{"location": LOCATION, "on_hand": units}]}
                reply = await client.put(
                    f"/v1/skus/{sku}", json=body, headers={"Authorization": f"Bearer {admin}"}
                )
                reply.raise_for_status()
        # One worker: uvicorn serves from the process it was started in, with no children.
        workers = psutil.Process(api.pid).children(recursive=True) or [psutil.Process(api.pid)]
        job = {
            "base_url": api.base_url,
            "api_pids": [w.pid for w in workers],
            "storefront_key": storefront,
            "run_id": run_id,
            "ttl_seconds": HOLD_TTL_S,
            "workload": dict(workload.__dict__),
            "light_sku": light_sku,
            "light_calls": light_calls,
            "light_warmup": LIGHT_LOAD_WARMUP,
        }
        driver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadtests.bench.http_driver",
            orjson.dumps(job).decode(),
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await driver.communicate()
        if driver.returncode != 0:
            tail = "\n".join(api.log.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"http driver failed ({driver.returncode}); serve log:\n{tail}")
        rss_mib = max((peak_rss_kib(w.pid) for w in workers), default=0) / 1024
    result = orjson.loads(output)
    note = (
        f"{api_workers} API worker(s); driver peak RSS "
        f"{result['driver_peak_rss_kib'] / 1024:.0f} MiB; RSS is per API worker"
    )
    if result["other_refusals"]:
        note += f"; other refusals by status: {result['other_refusals']}"
    cpu = result["api_cpu_us"]
    api_cpu = ApiCpu(
        trivial_us=cpu["trivial"],
        reserve_us=cpu["reserve"],
        refusal_us=cpu["refusal"],
        trivial_requests=int(result["trivial_requests"]),
        driver_trivial_us=result["driver_cpu_us"]["trivial"],
        driver_reserve_us=result["driver_cpu_us"]["reserve"],
        driver_refusal_us=result["driver_cpu_us"]["refusal"],
        light_load_calls=light_calls,
        light_load_p50_ms=result["light_load"]["p50_ms"],
        light_load_p99_ms=result["light_load"]["p99_ms"],
    )
    return (
        PhaseCounts(**result["selling"]),
        PhaseCounts(**result["soldout"]),
        int(result["available_after_selling"]),
        rss_mib,
        note,
        api_cpu,
    )
