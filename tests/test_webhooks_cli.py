"""`flashsale webhooks status`, and the README's receiver example run against real messages."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import psycopg
from typer.testing import CliRunner

from flashsale.cli import app
from sync_worker.migrations import upgrade
from tests.webhooks_support import libpq
from webhooks import signing, store

README = Path(__file__).resolve().parents[1] / "README.md"


def test_status_shows_the_lag_and_each_endpoints_deliveries(
    pg_database_url: str, redis_url: str
) -> None:
    upgrade(pg_database_url)

    async def disabled_endpoint_with_a_pending_test() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(
            libpq(pg_database_url), autocommit=True
        ) as conn:
            endpoint = await store.create_endpoint(
                conn, "https://shop.example.com/hooks", ["inventory.low_stock"], "storefront"
            )
            await store.enqueue_test(conn, endpoint["id"])
            await store.update_endpoint(conn, endpoint["id"], enabled=False)
            return endpoint

    endpoint = asyncio.run(disabled_endpoint_with_a_pending_test())
    env = {"FLASHSALE_DATABASE_URL": pg_database_url, "FLASHSALE_REDIS_URL": redis_url}
    result = CliRunner().invoke(app, ["webhooks", "status"], env=env)
    assert result.exit_code == 0, result.output
    assert "caught up" in result.output
    row = next(line for line in result.output.splitlines() if endpoint["id"] in line)
    assert "pending 1  delivered 0  failed 0" in row
    assert row.endswith("disabled (disabled by an operator)")


def test_a_bad_webhook_setting_is_one_line_naming_the_variable(
    pg_database_url: str, redis_url: str
) -> None:
    env = {
        "FLASHSALE_DATABASE_URL": pg_database_url,
        "FLASHSALE_REDIS_URL": redis_url,
        "FLASHSALE_WEBHOOK_TIMEOUT_SECONDS": "-1",
    }
    result = CliRunner().invoke(app, ["webhooks", "run"], env=env)
    assert result.exit_code == 2
    assert result.output.startswith("error: FLASHSALE_WEBHOOK_TIMEOUT_SECONDS:")


def readme_receiver(secret: str) -> Any:
    section = README.read_text().split("## Webhooks", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict[str, Any] = {}
    exec(code.replace("whsec_…", secret), namespace)  # noqa: S102 - our own README
    return namespace["app"]


async def test_the_readme_receiver_accepts_signed_messages_and_refuses_forged_ones() -> None:
    secret = signing.new_secret()
    transport = httpx.ASGITransport(app=readme_receiver(secret))
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        body = '{"type":"inventory.out_of_stock","timestamp":"t","data":{"sku":"s1"}}'
        headers = signing.headers("msg_1_ab", body, [secret])
        ok = await client.post("/hooks/flashsale", content=body, headers=headers)
        assert ok.status_code == 200, ok.text
        again = await client.post("/hooks/flashsale", content=body, headers=headers)
        assert again.status_code == 200  # a repeat is acknowledged, not handled twice
        forged = signing.headers("msg_1_ab", body, [signing.new_secret()])
        refused = await client.post("/hooks/flashsale", content=body, headers=forged)
        assert refused.status_code == 400
        tampered = await client.post(
            "/hooks/flashsale", content=body.replace("s1", "s2"), headers=headers
        )
        assert tampered.status_code == 400
