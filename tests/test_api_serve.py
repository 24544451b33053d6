"""`flashsale serve --workers 2`: two processes sharing keys, token secret, limits and metrics."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flashsale.procs import free_port

CART = {"customer_id": "c1", "lines": [{"sku": "s1", "quantity": 2}]}


@pytest.fixture
def served(redis_client: object, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The API as `flashsale serve --workers 2`, no keys set (it generates them); its log."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    env.update(
        FLASHSALE_REDIS_URL=redis_url,
        # Set but unreachable: serve must not start embedded servers, and the API still works.
        FLASHSALE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        FLASHSALE_RATE_LIMIT_PER_CUSTOMER="0",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "flashsale", "serve", "--workers", "2", "--port", str(port)],
            cwd=tmp_path,  # away from the repository's .env
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base_url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base_url, log
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0, log.read_text()  # graceful: lifespan closed
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def generated_key(log: Path, role: str) -> str:
    match = re.search(rf"^\s*{role}\s+(\S+)$", log.read_text(), re.MULTILINE)
    assert match, log.read_text()
    return match.group(1)


async def test_two_workers_share_keys_tokens_idempotency_and_metrics(
    served: tuple[str, Path],
) -> None:
    base_url, log = served
    admin = {"Authorization": f"Bearer {generated_key(log, 'admin')}"}
    storefront = {"Authorization": f"Bearer {generated_key(log, 'storefront')}"}
    async with httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=20)) as c:
        body = {"locations": [{"location": "wh-1", "on_hand": 10}]}
        assert (await c.put("/v1/skus/s1", json=body, headers=admin)).status_code == 201
        headers = {**storefront, "Idempotency-Key": "one-cart"}
        posts = await asyncio.gather(
            *(c.post("/v1/reservations", json=CART, headers=headers) for _ in range(20))
        )
        assert sorted(p.status_code for p in posts) == [200] * 19 + [201]
        token = {**storefront, "X-Reservation-Token": posts[0].json()["reservation_token"]}
        # Many connections land on both workers: every one must accept the other's token.
        reads = await asyncio.gather(
            *(c.get("/v1/reservations/one-cart", headers=token) for _ in range(20))
        )
        assert {r.status_code for r in reads} == {200}
        level = (await c.get("/v1/inventory/s1", headers=storefront)).json()["total"]
        assert level["reserved"] == 2
        metrics = (await c.get("/metrics")).text
    # Summed over both worker processes, whichever one answered the scrape.
    served_posts = re.findall(
        r'flashsale_http_requests_total\{method="POST",route="/v1/reservations",'
        r'status="(\d+)"\} (\d+)',
        metrics,
    )
    assert sum(float(n) for _, n in served_posts) == 20, metrics
