"""The CLI as a newcomer meets it: negative stock deltas, refusals in words, `--version`."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.demo import DEMO_SKU, seed
from flashsale.settings import Settings


def invoke(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        "FLASHSALE_REDIS_URL": str(settings.redis_url),
        "FLASHSALE_DATABASE_URL": str(settings.database_url),
        "FLASHSALE_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def demo(settings: Settings) -> Settings:
    asyncio.run(seed(settings))
    return settings


def test_stock_adjust_takes_a_negative_delta_and_a_reason_after_it(demo: Settings) -> None:
    code, output = invoke(demo, "stock", "adjust", DEMO_SKU, "wh-east", "-1", "--reason", "damaged")
    assert code == 0, output
    assert f"{DEMO_SKU}@wh-east: on_hand=59" in output


def test_a_refusal_prints_the_sentence_the_api_sends_once(demo: Settings) -> None:
    code, output = invoke(demo, "stock", "show", "nope")
    assert code == 1
    assert output.strip() == "error: no SKU nope"

    code, output = invoke(demo, "stock", "restock", DEMO_SKU, "wh-north", "1")
    assert code == 1
    assert output.strip() == f"error: SKU {DEMO_SKU} has no location wh-north"


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"flashsale {version('flashsale')}"
