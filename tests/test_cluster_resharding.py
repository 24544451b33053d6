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


def _move(slot: int, src: redis.Redis, dst: redis.Redis, primaries: list[redis.Redis]) -> None:
    """The rest of a reshard of one slot: its keys to dst, then dst owns it everywhere."""
    host, port = (
        dst.connection_pool.connection_kwargs["host"],
        dst.connection_pool.connection_kwargs["port"],
    )
    keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
    if keys:
        src.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *keys)
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
    with migrating(engine.redis, key):
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
    await check_invariants(engine, ["hot"])


async def test_a_partition_moved_to_another_primary_keeps_serving_after_moved_and_noscript(
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
            _move(slot, src, dst, nodes)
        # MOVED sends the client to the new owner, whose NOSCRIPT makes the engine load it there.
        assert (await engine.reserve("after", "c2", [CartLine("hot", 1)])).status == "held"
        assert (await engine.commit("before", "o1")).status == "committed"
        total = (await engine.inventory("hot")).total
        assert (total.reserved, total.committed) == (1, 1)
        await check_invariants(engine, ["hot"])
        with migrating(engine.redis, key) as (slot, back_from, back_to):
            _move(slot, back_from, back_to, nodes)  # home again, for the other tests
    finally:
        for node in nodes:
            node.close()
