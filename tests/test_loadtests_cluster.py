"""The Locust suites that matter most on a Redis Cluster, small, against a whole stack (API with
2 workers, sync worker, sweeper) on the session's cluster with 16 partitions: flash_sale (one hot
SKU, one slot) and multi_sku_carts (carts spanning partitions and primaries) pass their verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.cluster

from engine.keys import KeySchema
from flashsale.local_stack import CLUSTER_PARTITIONS, LocalStack
from flashsale.settings import load as load_settings
from loadtests.runner import RunOptions, run
from tests.conftest import flush_cluster, fresh_database

pytestmark = pytest.mark.slow

SMALL = RunOptions(users=60, spawn_rate=30, run_time=10)


@pytest.fixture(scope="module")
def cluster_stack(
    redis_cluster_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    flush_cluster(redis_cluster_url)
    root = tmp_path_factory.mktemp("loadtest-cluster")
    with fresh_database(database_url) as db_url:
        settings = load_settings(
            redis_url=redis_cluster_url,
            redis_cluster=True,
            database_url=db_url,
            data_dir=root / "data",
            partitions=CLUSTER_PARTITIONS,
        )
        with LocalStack(settings, root / "logs") as running:
            yield running


def _skus(report_dir: Path) -> list[str]:
    return list(json.loads((report_dir / "final_state.json").read_text())["final"])


def test_flash_sale_verdict_passes_on_the_cluster(
    cluster_stack: LocalStack, tmp_path: Path
) -> None:
    result = run("flash_sale", SMALL, stack=cluster_stack, reports=tmp_path)
    assert result.passed, f"{result.summary}\nreport: {result.report_dir}"
    assert result.verdict.facts["sold"] > 0, result.summary


def test_multi_sku_carts_verdict_passes_across_partitions_and_primaries(
    cluster_stack: LocalStack, tmp_path: Path
) -> None:
    result = run("multi_sku_carts", SMALL, stack=cluster_stack, reports=tmp_path)
    assert result.passed, f"{result.summary}\nreport: {result.report_dir}"
    assert result.verdict.facts["committed_carts"] > 0, result.summary
    # The run proves something about the cluster only if its carts could span primaries.
    keys = KeySchema(CLUSTER_PARTITIONS)
    skus = _skus(result.report_dir)
    with redis.cluster.RedisCluster.from_url(str(cluster_stack.settings.redis_url)) as client:
        owners = {client.get_node_from_key(keys.for_sku(s).skus).name for s in skus}  # type: ignore[union-attr]
    assert len({keys.for_sku(s).number for s in skus}) > 2, skus
    assert len(owners) > 1, skus
