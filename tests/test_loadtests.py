"""The Locust suites: every scenario small against one shared local stack, asserting
its verdict; a full-size variant under the `load` marker; and proof that the verdict can fail.

Proof of failure, three ways:
  * the flash_sale verdict on a fabricated oversold final state,
  * a real run whose final state is then oversold behind the engine's back (one unit committed
    straight into the SKU hash, no script, no ledger row): the verdict read from the live API and
    ledger must say FAIL, and
  * a deliberately broken engine: a throwaway stack (its own Redis, its own database) whose
    reserve script is a patched copy that ignores available stock (`Settings.lua_dir` hands the
    copy to the API, worker and sweeper child processes); a real flash_sale run on it must FAIL
    for the oversell.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine.keys import KeySchema
from engine.scripts import lua_dir
from flashsale.local_stack import LocalStack
from flashsale.settings import load as load_settings
from loadtests.admin import Admin, SkuState
from loadtests.checks import flash_sale
from loadtests.runner import RunOptions, run
from loadtests.scenarios import NAMES
from tests.conftest import fresh_database

SMALL = RunOptions(users=60, spawn_rate=30, run_time=10)
PARTITIONS = 4  # carts of several SKUs cross partition streams


@pytest.fixture(scope="module")
def stack(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """API (2 workers), sync worker and sweeper on the session's servers, one fresh database."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    root = tmp_path_factory.mktemp("loadtest")
    with fresh_database(database_url) as db_url:
        settings = load_settings(
            redis_url=redis_url, database_url=db_url, data_dir=root / "data", partitions=PARTITIONS
        )
        with LocalStack(settings, root / "logs") as running:
            yield running


@pytest.mark.parametrize("scenario", NAMES)
def test_scenario_verdict_passes(stack: LocalStack, scenario: str, tmp_path: Path) -> None:
    result = run(scenario, SMALL, stack=stack, reports=tmp_path)
    assert result.passed, f"{result.summary}\nreport: {result.report_dir}"
    assert "VERDICT: PASS" in result.summary
    for name in ("report.html", "locust_stats.csv", "verdict.txt", "final_state.json"):
        assert (result.report_dir / name).exists(), name


@pytest.mark.load
@pytest.mark.parametrize("scenario", NAMES)
def test_scenario_full_size(stack: LocalStack, scenario: str, tmp_path: Path) -> None:
    full = RunOptions(users=2000, spawn_rate=200, run_time=60, processes=-1)
    result = run(scenario, full, stack=stack, reports=tmp_path)
    assert result.passed, f"{result.summary}\nreport: {result.report_dir}"


def _level(on_hand: int, committed: int) -> dict[str, object]:
    return {
        "location": "wh-1",
        "on_hand": on_hand,
        "available": on_hand - committed,
        "reserved": 0,
        "committed": committed,
        "safety_stock": 0,
        "backorder_limit": 0,
    }


def test_verdict_fails_on_a_fabricated_oversell() -> None:
    level = _level(10, 11)
    ledger = [
        {"location": "wh-1", "type": "on_hand_set", "d_on_hand": 10},
        *({"location": "wh-1", "type": "committed", "d_committed": 1} for _ in range(11)),
    ]
    state = {"x-fs": SkuState({"locations": [level], "total": level}, ledger)}
    verdict = flash_sale.verdict(state, {"units_committed": 11}, units=10, failures=0)
    assert not verdict.passed
    line = verdict.line("flash_sale")
    assert line.startswith("VERDICT: FAIL flash_sale")
    assert "oversold: 11 committed of 10" in line
    assert "available -1 below 0" in line


def test_verdict_fails_on_a_real_stack_oversold_behind_the_engine(
    stack: LocalStack, tmp_path: Path
) -> None:
    small = RunOptions(users=20, spawn_rate=20, run_time=4)
    result = run("flash_sale", small, stack=stack, reports=tmp_path)
    assert result.passed, result.summary
    sku = next(iter(_final(result.report_dir)))
    # The bug the suite exists for, simulated: one more unit sold than there is, with no event.
    key = KeySchema(PARTITIONS).for_sku(sku).sku(sku)
    with redis.Redis.from_url(str(stack.settings.redis_url)) as client:
        client.hincrby(key, "cm:wh-1", 1)
    admin = Admin(stack.host, stack.admin_key, stack.storefront_key)
    try:
        admin.wait_settled([sku], 30)
        state = admin.final_state([sku])
    finally:
        admin.close()
    units = int(state[sku].inventory["total"]["on_hand"])
    counts = {"units_committed": int(state[sku].inventory["total"]["committed"]) - 1}
    verdict = flash_sale.verdict(state, counts, units, failures=0)
    line = verdict.line("flash_sale")
    assert not verdict.passed, line
    assert "oversold" in line
    assert "ledger committed sums to" in line
    assert "buyers were told" in line


# Shadows the include's `available(q)` for the code of reserve.lua only (the scripts are sent as
# includes + script, one chunk): the allocation sees a billion free units at every location, so
# the insufficient_stock refusal never fires. Events, levels and the other scripts still use the
# real `available`, so the oversell shows in the API and the ledger as it would in production.
UNLIMITED_STOCK = (
    "-- BROKEN ON PURPOSE (tests/test_loadtests.py): the stock check is skipped.\n"
    "local function available(q) return 1000000000 end\n"
)


def _lua_without_stock_check(dest: Path) -> Path:
    """A copy of the scripts whose reserve.lua allocates units that are not there."""
    shutil.copytree(lua_dir(), dest)
    reserve = dest / "reserve.lua"
    source = reserve.read_text()
    # The shadow only bites if reserve.lua reads stock through available(); fail loudly if not.
    calls = len(re.findall(r"(?<![\w.:])available\(", source))
    assert calls >= 1, "reserve.lua no longer calls available(q): adapt UNLIMITED_STOCK"
    assert "local function available" not in source, "reserve.lua defines its own available()"
    reserve.write_text(UNLIMITED_STOCK + source)
    return dest


@pytest.mark.slow
def test_verdict_fails_on_an_engine_whose_reserve_skips_the_stock_check(
    database_url: str, tmp_path: Path
) -> None:
    broken = _lua_without_stock_check(tmp_path / "lua")
    with fresh_database(database_url) as db_url:
        # No redis_url: the stack starts its own Redis under tmp_path, never the session's.
        settings = load_settings(
            redis_url=None, database_url=db_url, data_dir=tmp_path / "data", lua_dir=broken
        )
        with LocalStack(settings, tmp_path / "logs") as throwaway:
            assert throwaway.settings.lua_dir == broken
            options = RunOptions(users=20, spawn_rate=20, run_time=5)
            result = run("flash_sale", options, stack=throwaway, reports=tmp_path / "reports")
    report = json.loads((result.report_dir / "final_state.json").read_text())
    # The patch took: not one buyer was turned away for stock.
    assert report["counts"].get("refused_insufficient_stock", 0) == 0, report["counts"]
    units, sold = result.verdict.facts["units"], result.verdict.facts["sold"]
    assert sold > units, result.summary
    assert not result.passed, result.summary
    assert "VERDICT: FAIL flash_sale: " in result.summary
    assert f"oversold: {sold} committed of {units}" in result.summary
    assert re.search(r"@wh-1: available -\d+ below 0 \(oversold\)", result.summary), result.summary
    # The right reason only: no unexpected responses, ledger and buyers agree with the server.
    assert all("oversold" in v for v in result.verdict.violations), result.verdict.violations
    assert (result.report_dir / "verdict.txt").read_text().startswith("VERDICT: FAIL flash_sale")


def _final(report_dir: Path) -> dict[str, object]:
    final: dict[str, object] = json.loads((report_dir / "final_state.json").read_text())["final"]
    return final
