"""The demo hint `make run` prints: it names the demo SKU, and its curl commands work as pasted."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess

from flashsale.banner import DEMO_CART, demo_hint
from flashsale.demo import DEMO_SKU, seed
from tests.api_harness import STOREFRONT_KEY, api_settings, live_server


def test_the_demo_hint_names_the_sku_and_its_curls_answer(
    redis_client: object, redis_url: str
) -> None:
    settings = api_settings(redis_url)
    asyncio.run(seed(settings))
    with live_server(settings) as base_url:
        lines = demo_hint(base_url + "/", STOREFRONT_KEY)
        assert DEMO_SKU in lines[0]
        commands = [line.strip() for line in lines if line.strip().startswith("curl ")]
        assert len(commands) == 2
        answers = []
        for command in commands:
            argv = [*shlex.split(command), "--fail-with-body"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            answers.append(json.loads(done.stdout))
    inventory, reservation = answers
    assert inventory["sku"] == DEMO_SKU and inventory["total"]["available"] == 100
    assert (reservation["id"], reservation["status"]) == (DEMO_CART, "held")
