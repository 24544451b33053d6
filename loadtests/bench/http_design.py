"""engine-http: `flashsale serve --workers 2` as a subprocess, driven by http_driver in another."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psutil

from engine.config import Settings
from loadtests.bench.redis_designs import HOLD_TTL_S, LOCATION
from loadtests.bench.workload import PhaseCounts, Workload

API_WORKERS = 2  # as the issue asks; `flashsale bench --api-workers N` measures others
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the kernel's own high-water mark of the process' resident set."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def run(
    settings: Settings,
    redis_url: str,
    database_url: str,
    workload: Workload,
    run_id: str,
    api_workers: int = API_WORKERS,
) -> tuple[PhaseCounts, PhaseCounts, int, float, str]:
    """Returns both phases, available after selling, the API workers' peak RSS (MiB), a note."""
    admin, storefront = f"adm_{secrets.token_urlsafe(16)}", f"sf_{secrets.token_urlsafe(16)}"
    port = free_port()
    env = dict(os.environ)
    env.update(
        FLASHSALE_REDIS_URL=redis_url,
        FLASHSALE_DATABASE_URL=database_url,
        FLASHSALE_PARTITIONS=str(settings.partitions),  # the server must name keys as we do
        FLASHSALE_ADMIN_KEYS=admin,
        FLASHSALE_STOREFRONT_KEYS=storefront,
        FLASHSALE_TOKEN_SECRET=secrets.token_urlsafe(32),
        # Every buyer asks far more often than a storefront would allow one customer.
        FLASHSALE_RATE_LIMIT_PER_CUSTOMER="0",
        FLASHSALE_RATE_LIMIT_PER_KEY="0",
        PYTHONUNBUFFERED="1",
    )
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp:
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flashsale",
                    "serve",
                    "--workers",
                    str(api_workers),
                    "--port",
                    str(port),
                    "--no-access-log",  # a log line per request would be what we measure
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            await wait_healthy(server, base_url, log)
            async with httpx.AsyncClient(base_url=base_url) as client:
                body = {"locations": [{"location": LOCATION, "on_hand": workload.units}]}
                reply = await client.put(
                    f"/v1/skus/{workload.sku}",
                    json=body,
                    headers={"Authorization": f"Bearer {admin}"},
                )
                reply.raise_for_status()
            job = {
                "base_url": base_url,
                "storefront_key": storefront,
                "run_id": run_id,
                "ttl_seconds": HOLD_TTL_S,
                "workload": dict(workload.__dict__),
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
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                raise RuntimeError(f"http driver failed ({driver.returncode}); serve log:\n{tail}")
            # One worker: uvicorn serves from the process it was started in, with no children.
            workers = psutil.Process(server.pid).children(recursive=True) or [server]
            rss_mib = max((peak_rss_kib(w.pid) for w in workers), default=0) / 1024
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    result = orjson.loads(output)
    note = (
        f"{api_workers} API worker(s); driver peak RSS "
        f"{result['driver_peak_rss_kib'] / 1024:.0f} MiB; RSS is per API worker"
    )
    if result["other_refusals"]:
        note += f"; other refusals by status: {result['other_refusals']}"
    return (
        PhaseCounts(**result["selling"]),
        PhaseCounts(**result["soldout"]),
        int(result["available_after_selling"]),
        rss_mib,
        note,
    )


async def wait_healthy(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base_url) as client:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"flashsale serve exited:\n{log.read_text()}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"flashsale serve did not start:\n{log.read_text()}")
            await asyncio.sleep(0.1)
