"""The launch console in a real browser: Debian's Chromium driven by Playwright.

Runs the API on uvicorn with the suite's Redis and Postgres, the sync worker, and the demo sale;
logs in, watches a burst of reservations arrive without a reload, opens the SKU page, logs out,
and renders /docs and /redoc with every request off this server refused. The screenshot lands
in the test's folder; with FLASHSALE_UPDATE_SCREENSHOT=1 also in docs/console.png.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from flashsale.demo import DEMO_SKU, seed
from flashsale.settings import Settings
from tests.api_harness import ADMIN, ADMIN_KEY, STOREFRONT, STOREFRONT_KEY, api_settings
from tests.test_console import serving

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "console.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000

pytestmark = pytest.mark.slow


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = "Chromium missing: apt-get install -y chromium (Debian) to run the browser test"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright", reason="pip install -e '.[dev]' brings playwright")
    return CHROMIUM


@pytest.fixture
def worker(cfg: Settings, tmp_path: Path) -> Iterator[None]:
    """`flashsale worker run` in a child process, so the ledger fills as in `flashsale dev`."""
    env = {
        **os.environ,
        "FLASHSALE_REDIS_URL": str(cfg.redis_url),
        "FLASHSALE_DATABASE_URL": str(cfg.database_url),
        "FLASHSALE_PARTITIONS": str(cfg.partitions),
        "FLASHSALE_WORKER_BLOCK_MS": "50",
        "FLASHSALE_DATA_DIR": str(tmp_path / "worker"),
    }
    with open(tmp_path / "worker.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flashsale", "worker", "run"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


def burst(url: str) -> None:
    """Ten buyers take two units each; three check out; one tries a second hold and is refused."""
    with httpx.Client(base_url=url, timeout=10) as client:
        tokens = {}
        for n in range(10):
            if n == 5:
                time.sleep(1.1)  # two waves: the charts get a shape, not one spike
            body = {"customer_id": f"c{n}", "lines": [{"sku": DEMO_SKU, "quantity": 2}]}
            response = client.post("/v1/reservations", json=body, headers=STOREFRONT)
            assert response.status_code == 201, response.text
            tokens[response.json()["id"]] = response.json()["reservation_token"]
        for reservation, token in list(tokens.items())[:3]:
            response = client.post(
                f"/v1/reservations/{reservation}/commit",
                json={"order_id": f"o-{reservation}"},
                headers={**STOREFRONT, "X-Reservation-Token": token},
            )
            assert response.status_code == 200, response.text
        again = {"customer_id": "c0", "lines": [{"sku": DEMO_SKU, "quantity": 1}]}
        assert client.post("/v1/reservations", json=again, headers=STOREFRONT).status_code >= 400
        assert client.get(f"/v1/skus/{DEMO_SKU}", headers=ADMIN).status_code == 200


def test_the_console_shows_the_demo_sale_live(
    chromium: Path, cfg: Settings, worker: None, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    settings = api_settings(cfg.redis_url or "", cfg.database_url, partitions=cfg.partitions)
    asyncio.run(seed(settings))
    with serving(settings) as (url, app), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{url}/console")

            # A storefront key is refused; the admin key opens a session (no key in the page).
            page.fill("#key", STOREFRONT_KEY)
            page.click("#login-form button")
            expect(page.locator("#login-error")).to_contain_text("admin key", timeout=WAIT_MS)
            page.fill("#key", ADMIN_KEY)
            page.click("#login-form button")
            (cookie,) = context.cookies()
            assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

            total = page.locator(f"tr.sku[data-sku='{DEMO_SKU}']")
            east = page.locator(f"tr.loc[data-sku='{DEMO_SKU}'][data-location='wh-east']")
            expect(total.locator("[data-field=available]")).to_have_text("100", timeout=WAIT_MS)
            expect(total.locator("[data-field=reserved]")).to_have_text("0")

            burst(url)  # no reload from here on: the numbers must arrive by the stream
            expect(total.locator("[data-field=reserved]")).to_have_text("14", timeout=WAIT_MS)
            expect(total.locator("[data-field=committed]")).to_have_text("6")
            expect(total.locator("[data-field=available]")).to_have_text("80")
            expect(east.locator("[data-field=available]")).to_have_text("40")
            sums = """() => {
                const all = [...points.values()];
                const sum = (f) => all.reduce((a, p) => a + f(p), 0);
                return {
                    reserves: sum((p) => p.reserves),
                    commits: sum((p) => p.commits),
                    refusals: sum((p) => Object.values(p.refusals).reduce((a, b) => a + b, 0)),
                };
            }"""
            page.wait_for_function(
                f"() => ({sums})().reserves === 10 && ({sums})().commits === 3", timeout=WAIT_MS
            )
            assert page.evaluate(sums) == {"reserves": 10, "commits": 3, "refusals": 1}
            expect(page.locator("#legend-refusals [data-series]")).to_have_count(1)
            page.wait_for_timeout(1500)  # one more update, so the charts' right edge is drawn
            page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            if os.environ.get("FLASHSALE_UPDATE_SCREENSHOT") == "1":
                SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(tmp_path / "console.png", SCREENSHOT)

            # The SKU page: configuration, levels, and the ledger rows the worker wrote.
            page.click(f"tr.sku[data-sku='{DEMO_SKU}'] a")
            expect(page.locator("#sku-title")).to_have_text(DEMO_SKU)
            expect(page.locator("#sku-config")).to_contain_text("purchase limit")
            levels = page.locator("#sku-levels tr[data-location='*'] [data-field=reserved]")
            expect(levels).to_have_text("14", timeout=WAIT_MS)
            expect(page.locator("#sku-ledger")).to_contain_text("committed", timeout=WAIT_MS)
            page.screenshot(path=str(tmp_path / "console-sku.png"), full_page=True)

            page.click("#logout")
            expect(page.locator("#login")).to_be_visible()
            page.reload()
            expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
            page.close()

            # /docs and /redoc with the network cut off: anything not from this server fails.
            offline = browser.new_context()
            host = urlsplit(url).netloc
            offline.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if urlsplit(route.request.url).netloc == host
                    else route.abort()
                ),
            )
            docs = offline.new_page()
            docs.goto(f"{url}/docs")
            expect(docs.locator(".swagger-ui .info .title")).to_contain_text(
                "flashsale", timeout=WAIT_MS
            )
            expect(docs.locator(".swagger-ui")).to_contain_text("/v1/skus")
            docs.goto(f"{url}/redoc")
            expect(docs.locator("h1")).to_contain_text("flashsale", timeout=WAIT_MS)
            offline.close()
        finally:
            browser.close()
        hub = app.state.console.hub
        deadline = time.monotonic() + 5
        while hub.subscribers and time.monotonic() < deadline:  # a closed page ends its stream
            time.sleep(0.1)
        assert hub.subscribers == 0
