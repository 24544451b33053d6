"""`flashsale sku create|show|list` against the suite's Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flashsale.cli import app
from flashsale.settings import Settings


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    assert settings.redis_url and settings.database_url
    return {
        "FLASHSALE_REDIS_URL": settings.redis_url,
        "FLASHSALE_DATABASE_URL": settings.database_url,
        "FLASHSALE_DATA_DIR": str(tmp_path / "data"),
    }


def sku(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["sku", *args], env=env)


def test_create_show_and_list(env: dict[str, str]) -> None:
    made = sku(
        env,
        "create",
        "shoe",
        "--location",
        "wh-1=5",
        "--location",
        "wh-2=0",
        "--backorder-limit",
        "wh-2=3",
        "--purchase-limit",
        "2",
        "--low-stock-threshold",
        "6",
    )
    assert made.exit_code == 0, made.output
    assert sku(env, "create", "hat", "--location", "wh-1=0").exit_code == 0

    shown = sku(env, "show", "shoe", "--json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.output)
    assert [loc["location"] for loc in detail["config"]["locations"]] == ["wh-1", "wh-2"]
    assert detail["config"]["locations"][1]["backorder_limit"] == 3
    assert detail["config"]["purchase_limit"] == 2
    assert detail["inventory"]["total"]["on_hand"] == 5
    assert "wh-2" in sku(env, "show", "shoe").output

    listed = sku(env, "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(item["sku"] for item in json.loads(listed.output)) == ["hat", "shoe"]
    assert [i["sku"] for i in json.loads(sku(env, "list", "--sold-out", "--json").output)] == [
        "hat"
    ]
    assert [i["sku"] for i in json.loads(sku(env, "list", "--low-stock", "--json").output)] == [
        "shoe"
    ]
    table = sku(env, "list").output
    assert "shoe" in table and "2 SKU(s)" in table


def test_create_refuses_an_existing_sku_and_bad_locations(env: dict[str, str]) -> None:
    assert sku(env, "create", "shoe", "--location", "wh-1=5").exit_code == 0
    again = sku(env, "create", "shoe", "--location", "wh-1=9")
    assert again.exit_code == 1
    assert "exists already" in again.output
    assert (
        json.loads(sku(env, "show", "shoe", "--json").output)["inventory"]["total"]["on_hand"] == 5
    )
    assert sku(env, "create", "x", "--location", "wh-1").exit_code == 2
    assert sku(env, "create", "x", "--location", "a=1", "--backorder-limit", "b=1").exit_code == 2
    unknown = sku(env, "show", "nope")
    assert unknown.exit_code == 1
    assert unknown.output == "error: no SKU nope\n"  # the sentence the API says, once


@pytest.mark.parametrize("command", ["create", "show", "list"])
def test_help(command: str) -> None:
    result = CliRunner().invoke(app, ["sku", command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_create_with_a_placement_group(env: dict[str, str]) -> None:
    env = {**env, "FLASHSALE_PARTITIONS": "16"}
    made = sku(env, "create", "shoe", "--location", "wh-1=5", "--placement-group", "spring-drop")
    assert made.exit_code == 0, made.output
    assert "placement group spring-drop" in made.output
    detail = json.loads(sku(env, "show", "shoe", "--json").output)
    assert detail["config"]["placement_group"] == "spring-drop"
    assert "spring-drop" in sku(env, "show", "shoe").output
    bad = sku(env, "create", "hat", "--location", "wh-1=5", "--placement-group", "a b")
    assert bad.exit_code == 1 and "placement_group" in bad.output
