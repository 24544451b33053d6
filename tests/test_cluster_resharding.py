"""What the engine meets while a partition's slot moves to another primary (the README's "Adding
primaries"), on the session's real cluster, each step done by hand as `redis-cli --cluster
reshard` does it: IMPORTING/MIGRATING, MIGRATE of the keys, SETSLOT NODE on every primary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import redis
from redis.exceptions import ClusterError

from engine.connection import ClusterClient
from engine.engine import ReservationEngine
from engine.errors import PartitionRecovering
from engine.fencing import adopt
from engine.types import CartLine
from tests.conftest import flush_cluster
from tests.engine_support import check_invariants, make_engine, sku

pytestmark = pytest.mark.slow


@pytest.fixture
async def engine(redis_cluster_url: str) -> AsyncIterator[ReservationEngine]:
    flush_cluster(redis_cluster_url)
    eng = await make_engine(redis_cluster_url, cluster=True)
    yield eng
    await eng.aclose()


def _node(host: str, port: int) -> redis.Redis:
    return redis.Redis(host=host, port=port, decode_responses=True)


@contextmanager
def migrating(client: ClusterClient, key: str) -> Iterator[tuple[int, redis.Redis, redis.Redis]]:
    """The slot of `key` marked as moving to another primary; made stable again on exit."""
    slot = client.keyslot(key)
    owner = client.get_node_from_key(key)
    assert owner is not None
    other = next(n for n in client.get_primaries() if n.name != owner.name)
    with _node(owner.host, owner.port) as src, _node(other.host, other.port) as dst:
        dst.execute_command(
            "CLUSTER SETSLOT", slot, "IMPORTING", src.execute_command("CLUSTER MYID")
        )
        src.execute_command(
            "CLUSTER SETSLOT", slot, "MIGRATING", dst.execute_command("CLUSTER MYID")
        )
        try:
            yield slot, src, dst
        finally:
            for node in (src, dst):
                node.execute_command("CLUSTER SETSLOT", slot, "STABLE")


def _address(node: redis.Redis) -> tuple[str, int]:
    kwargs = node.connection_pool.connection_kwargs
    return kwargs["host"], kwargs["port"]


def _migrate(slot: int, src: redis.Redis, dst: redis.Redis, count: int = 1000) -> None:
    keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, count)
    if keys:
        src.execute_command("MIGRATE", *_address(dst), "", 0, 5000, "KEYS", *keys)


def _assign(slot: int, dst: redis.Redis, primaries: list[redis.Redis]) -> None:
    """The last step of moving a slot: every primary hears that dst owns it."""
    owner = dst.execute_command("CLUSTER MYID")
    for node in primaries:
        node.execute_command("CLUSTER SETSLOT", slot, "NODE", owner)


async def test_a_reserve_on_a_migrating_partition_fails_as_an_outage_and_holds_nothing(
    engine: ReservationEngine,
) -> None:
    await engine.configure_sku("hot", sku(10))
    await engine.reserve("before", "c1", [CartLine("hot", 1)])
    assert isinstance(engine.redis, ClusterClient)
    key = engine.keys.for_sku("hot").skus
    # A SKU of another partition, on the same primary as "hot" or not: it must not notice.
    elsewhere = next(
        f"sku-{i}"
        for i in range(100)
        if engine.keys.for_sku(f"sku-{i}").number != engine.keys.for_sku("hot").number
    )
    await engine.configure_sku(elsewhere, sku(10))
    with migrating(engine.redis, key):
        assert (await engine.reserve("other", "c4", [CartLine(elsewhere, 1)])).status == "held"
        # The reserve names a key that exists nowhere yet (the new reservation): Redis answers
        # TRYAGAIN (or ASK, then TRYAGAIN on the importing node); redis-py retries within its
        # budget of 16 attempts, then gives up.
        with pytest.raises(ClusterError, match="TTL exhausted"):
            await engine.reserve("during", "c2", [CartLine("hot", 1)])
        # Reads of keys that exist are served by the node that still has them.
        assert (await engine.inventory("hot")).total.reserved == 1
    held = await engine.reserve("after", "c3", [CartLine("hot", 1)])
    assert held.status == "held"
    assert (await engine.inventory("hot")).total.reserved == 2
    await check_invariants(engine, ["hot", elsewhere])


async def test_a_partition_moved_to_another_primary_refuses_reserves_until_it_is_assigned(
    engine: ReservationEngine,
) -> None:
    await engine.configure_sku("hot", sku(10))
    await engine.reserve("before", "c1", [CartLine("hot", 1)])
    assert isinstance(engine.redis, ClusterClient)
    key = engine.keys.for_sku("hot").skus
    nodes = [_node(n.host, n.port) for n in engine.redis.get_primaries()]
    try:
        with migrating(engine.redis, key) as (slot, src, dst):
            dst.script_flush()  # as a node added for the reshard: no scripts loaded
            # Before any key moved, with some moved, with all moved: the slot is still src's.
            for step, count in enumerate((0, 1, 1000)):
                _migrate(slot, src, dst, count)
                with pytest.raises(ClusterError, match="TTL exhausted"):
                    await engine.reserve(f"during-{step}", "c2", [CartLine("hot", 1)])
            assert src.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
            _assign(slot, dst, nodes)
        # MOVED sends the client to the new owner, whose NOSCRIPT makes the engine load it there.
        # The new owner is another server process: the partition writes nothing until it has
        # been verified there. No sync worker runs in this test to compare it with Postgres
        # (tests/test_fencing.py has that), so it is adopted as the worker would find it.
        with pytest.raises(PartitionRecovering):
            await engine.reserve("after", "c3", [CartLine("hot", 1)])
        await adopt(engine.scripts["fence"], engine.keys.for_sku("hot"))
        assert (await engine.reserve("after", "c3", [CartLine("hot", 1)])).status == "held"
        assert (await engine.commit("before", "o1")).status == "committed"
        total = (await engine.inventory("hot")).total
        assert (total.reserved, total.committed) == (1, 1)  # the refused reserves held nothing
        await check_invariants(engine, ["hot"])
        with migrating(engine.redis, key) as (slot, back_from, back_to):
            _migrate(slot, back_from, back_to)  # home again, for the other tests
            _assign(slot, back_to, nodes)
        await adopt(engine.scripts["fence"], engine.keys.for_sku("hot"))
    finally:
        for node in nodes:
            node.close()
