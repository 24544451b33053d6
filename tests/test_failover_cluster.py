"""A primary of a Redis Cluster SIGKILLed under reserve + commit traffic, its replica promoted.

The cluster is this test's own (3 primaries, one replica each, node timeout 2 s), never the
session's. A sync worker runs in this process with `auto_restore` on: a promoted replica found
behind Postgres is fenced and rebuilt from Postgres at once. Clients reserve carts whose lines
span partitions (and single lines) and commit them, retrying the same ids after any failure; one
probe per partition reserves and releases a SKU of its own, to time each partition's outage.

Afterwards: nothing oversold, Postgres equal to Redis (deep reconcile), every cart's parts agree
with its decision record, and each acknowledged reserve and commit that Redis no longer has is
one Postgres never received. Default mode may lose such operations (printed); zero-loss mode
(`redis_min_replicas_ack=1`) loses none.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg
import pytest
import redis
from redis.exceptions import RedisError

from engine import CartLine, Reservation, ReservationEngine
from engine import errors as e
from engine.carts import TRANSIENT
from engine.connection import ClusterClient, connect_url
from flashsale.procs import HOST, pid_alive, wait_until, write_state
from flashsale.redis_cluster import EmbeddedRedisCluster
from flashsale.redis_server import find_redis_server
from flashsale.settings import Settings
from sync_worker.db import libpq_url
from sync_worker.worker import SyncWorker
from tests.conftest import CLUSTER_PARTITIONS
from tests.engine_support import sku
from tests.worker_support import assert_consistent, fast, wait_synced

pytestmark = pytest.mark.slow

CLIENTS = 6
SKUS = 12
ON_HAND = 400
BEFORE_KILL_S = 2.0
AFTER_RECOVERY_S = 1.5
RECOVERY_TIMEOUT_S = 45.0
PROBE_PAUSE_S = 0.02
HEALTHY_HICCUP_S = 1.0
# What a client sees while a partition is away: its primary gone, then not yet verified.
AWAY = (RedisError, OSError, e.PartitionRecovering, e.NotReplicated)  # TimeoutError: OSError
# A buyer gives up on a call after this long and sends it again (the same ids: it replays), as an
# HTTP client with a timeout does; a connection stuck across the failover is then dropped.
CALL_TIMEOUT_S = 5.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedRedisCluster]:
    server = EmbeddedRedisCluster(tmp_path / "cluster", appendfsync="everysec", replicas=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Outages:
    """Per partition: when a probe call that failed began, and how long until one succeeded."""

    since: dict[int, float] = field(default_factory=dict)
    lasted: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    slow: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))

    def refused(self, partition: int, tried_at: float, error: Exception) -> None:
        self.since.setdefault(partition, tried_at)
        self.errors[partition].add(type(error).__name__)

    def served(self, partition: int, tried_at: float) -> None:
        started = self.since.pop(partition, None)
        if started is not None:
            self.lasted[partition].append(time.monotonic() - started)
        elif time.monotonic() - tried_at >= HEALTHY_HICCUP_S:
            # The client's own retries can carry one call across the whole failover: it then
            # succeeds late instead of failing. The partition was unavailable all the same.
            self.slow[partition].append(time.monotonic() - tried_at)

    def hit(self) -> set[int]:
        """The partitions that were unavailable at some point (refused, or answered late)."""
        return set(self.lasted) | set(self.slow)


@dataclass
class Ledger:
    """What the clients were told: acknowledged reserves and commits, by reservation id."""

    reserved: dict[str, list[CartLine]] = field(default_factory=dict)
    committed: set[str] = field(default_factory=set)
    refusals: int = 0


def skus_per_partition(engine: ReservationEngine) -> dict[int, str]:
    """One probe SKU per partition."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < engine.keys.partitions:
        name = f"probe-{n}"
        found.setdefault(engine.keys.for_sku(name).number, name)
        n += 1
    return found


async def _retrying(
    op: Callable[[], Awaitable[Reservation | None]], ledger: Ledger, stop: asyncio.Event
) -> Reservation | None:
    """Runs `op` until it answers (the same ids each time: a retry replays), or the test ends."""
    while True:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await op()
        except AWAY:
            ledger.refusals += 1
            if stop.is_set():
                return None
            await asyncio.sleep(0.05)


async def client(
    engine: ReservationEngine, n: int, names: list[str], ledger: Ledger, stop: asyncio.Event
) -> None:
    rng = random.Random(n)
    seq = 0
    while not stop.is_set():
        seq += 1
        rid = f"c{n}-{seq}"
        chosen = rng.sample(names, 2 if rng.random() < 0.7 else 1)
        lines = [CartLine(s, rng.choice((1, 2))) for s in chosen]
        try:
            held = await _retrying(partial(engine.reserve, rid, f"cust{n}", lines), ledger, stop)
        except (e.InsufficientStock, e.PurchaseLimitExceeded):
            continue
        if held is None:
            return
        ledger.reserved[rid] = lines
        try:
            done = await _retrying(partial(engine.commit, rid, f"o-{rid}"), ledger, stop)
        except (e.ReservationNotFound, e.InvalidState, e.ReservationExpired):
            continue  # the hold was lost with the primary: nothing to commit
        if done is None:
            return
        ledger.committed.add(rid)


async def probe(
    engine: ReservationEngine, partition: int, name: str, outages: Outages, stop: asyncio.Event
) -> None:
    seq = 0
    while not stop.is_set():
        seq += 1
        rid = f"probe-{partition}-{seq}"
        tried_at = time.monotonic()  # a call can hang a while before it fails: count that too
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await engine.reserve(rid, "prober", [CartLine(name, 1)])
                await engine.release(rid)
        except AWAY as exc:
            outages.refused(partition, tried_at, exc)
        else:
            outages.served(partition, tried_at)
        await asyncio.sleep(PROBE_PAUSE_S)


def owner_port(engine: ReservationEngine, key: str) -> int:
    """The port of the primary serving `key`'s slot, as the client knows it."""
    assert isinstance(engine.redis, ClusterClient)
    node = engine.redis.get_node_from_key(key)
    assert node is not None
    return int(node.port)


def kill(server: EmbeddedRedisCluster, port: int) -> None:
    state = json.loads(server.state_path.read_text())
    pid = dict(zip(state["ports"], state["pids"], strict=True))[port]
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(pid), 10)


def replica_port_of(server: EmbeddedRedisCluster, port: int) -> int:
    """The port of the replica of the primary on `port`."""
    with redis.Redis(host=HOST, port=port) as client:
        text = client.execute_command("CLUSTER", "NODES")
    lines = [line.split() for line in _text(text).strip().splitlines()]
    (primary_id,) = [ln[0] for ln in lines if ln[1].startswith(f"{HOST}:{port}@")]
    (replica,) = [ln for ln in lines if ln[3] == primary_id]
    return int(replica[1].split("@")[0].rsplit(":", 1)[1])


def is_primary(port: int) -> bool:
    try:
        with redis.Redis(host=HOST, port=port, socket_timeout=2) as client:
            return bool(client.execute_command("ROLE")[0] == b"master")
    except redis.RedisError:
        return False


def restart(server: EmbeddedRedisCluster, port: int) -> None:
    """Starts the killed node again, from its own folder: it finds its slots served by the
    promoted replica and becomes that one's replica (as an operator's restart would)."""
    (server.home / str(port) / "redis.pid").unlink(missing_ok=True)
    pid = server._spawn(find_redis_server(), port)
    state = json.loads(server.state_path.read_text())
    pids = [pid if p == port else old for p, old in zip(state["ports"], state["pids"], strict=True)]
    write_state(server.state_path, **{**state, "pids": pids, "pid": pids[0]})


async def settle_carts(engine: ReservationEngine) -> None:
    """The sweeper finishes every cart a failure left mid-way (recovery bound: 1 s)."""
    deadline = time.monotonic() + 20
    while True:
        await engine.sweep()
        left = 0
        for part in engine.keys.all():
            left += await engine.redis.zcard(part.carts)
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} carts still mid-way"
        await asyncio.sleep(0.2)


async def check_carts(engine: ReservationEngine, ledger: Ledger) -> None:
    """Every spanning cart's parts agree with its record, as the sweeper left it."""
    for rid, lines in ledger.reserved.items():
        partitions = {engine.keys.for_sku(line.sku).number for line in lines}
        if len(partitions) < 2:
            continue
        replies = await engine._read_parts(rid)
        home = engine.keys.partition(min(partitions))
        state = _text(await engine.redis.hget(home.cart(rid), "st"))
        statuses = {r["st"] for r in replies.values() if not r.get("missing")}
        assert state not in TRANSIENT, (rid, state)
        if state == "committed":
            assert statuses == {"committed"}, (rid, statuses)
        elif state == "held":
            assert statuses <= {"held", "expired"}, (rid, statuses)
        else:  # no record (lost, or refused) or ended: no part holds or sells anything
            assert not statuses & {"held", "committed"}, (rid, state, statuses)


async def assert_not_oversold(engine: ReservationEngine, names: list[str]) -> None:
    """Reserved is what the holds say; nothing held or sold beyond on_hand."""
    for name in names:
        part = engine.keys.for_sku(name)
        held = 0
        for raw in await engine.redis.zrange(part.holds(name), 0, -1):
            allocations = _text(raw).split("|")[2].split(";")
            held += sum(int(a.split("=")[1]) for a in allocations)
        level = (await engine.inventory(name)).total
        assert level.reserved == held, (name, level, held)
        assert level.reserved + level.committed <= level.on_hand, (name, level)


async def lost_operations(
    engine: ReservationEngine, ledger: Ledger, database_url: str
) -> tuple[set[str], set[str], set[str], set[str]]:
    """(reserves lost, commits lost, reserves Postgres never had, commits Postgres never had),
    among the acknowledged ones."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute("SELECT reservation_id, status FROM reservations").fetchall()
    in_postgres: dict[str, set[str]] = defaultdict(set)
    for rid, status in rows:
        in_postgres[str(rid)].add(str(status))
    lost_reserves, lost_commits = set(), set()
    for rid in ledger.reserved:
        try:
            found = await engine.get_reservation(rid)
        except e.ReservationNotFound:
            lost_reserves.add(rid)
            continue
        if rid in ledger.committed and found.status != "committed":
            lost_commits.add(rid)
    never_reserved = {rid for rid in ledger.reserved if rid not in in_postgres}
    never_committed = {
        rid for rid in ledger.committed if in_postgres.get(rid, set()) != {"committed"}
    }
    return lost_reserves, lost_commits, never_reserved, never_committed


@pytest.mark.parametrize("replicas_ack", [0, 1], ids=["default", "zero-loss"])
async def test_a_primary_killed_under_traffic(
    cfg: Settings,
    cluster: EmbeddedRedisCluster,
    replicas_ack: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = cluster.url
    assert url is not None
    settings = fast(
        cfg,
        redis_url=url,
        redis_cluster=True,
        partitions=CLUSTER_PARTITIONS,
        auto_restore=True,
        worker_fence_poll_ms=50,
        cart_recovery_seconds=1.0,
        redis_min_replicas_ack=replicas_ack,
    )
    assert settings.database_url
    engine = ReservationEngine(connect_url(url, cluster=True), settings)
    await engine.start()
    names = [f"item-{i}" for i in range(SKUS)]
    probes = skus_per_partition(engine)
    for name in names:
        await engine.configure_sku(name, sku(ON_HAND))
    for name in probes.values():
        await engine.configure_sku(name, sku(1_000_000))
    worker_client = connect_url(url, cluster=True)
    worker = SyncWorker(worker_client, settings.database_url, settings, "w1")
    worker_task = asyncio.create_task(worker.run())
    ledger, outages, stop = Ledger(), Outages(), asyncio.Event()
    tasks = [asyncio.create_task(client(engine, n, names, ledger, stop)) for n in range(CLIENTS)]
    tasks += [
        asyncio.create_task(probe(engine, p, name, outages, stop)) for p, name in probes.items()
    ]
    sweeper_stop = asyncio.Event()
    sweeper = asyncio.create_task(engine.run_sweeper(sweeper_stop, interval=0.2))
    try:
        await asyncio.sleep(BEFORE_KILL_S)
        port = owner_port(engine, engine.keys.for_sku(names[0]).skus)
        victims = {p.number for p in engine.keys.all() if owner_port(engine, p.skus) == port}
        replica_port = replica_port_of(cluster, port)
        killed_at = time.monotonic()
        kill(cluster, port)
        # Once the replica took over, the dead node comes back as its replica: zero-loss mode
        # acknowledges nothing on those partitions until the new primary has a replica again.
        assert await asyncio.to_thread(wait_until, lambda: is_primary(replica_port), 30)
        promoted_after = time.monotonic() - killed_at
        await asyncio.to_thread(restart, cluster, port)
        # Recovered: each partition of the dead primary failed and then served again.
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while not (victims <= outages.hit() and not outages.since):
            assert time.monotonic() < deadline, (victims, dict(outages.since))
            await asyncio.sleep(0.1)
        recovered_after = time.monotonic() - killed_at
        await asyncio.sleep(AFTER_RECOVERY_S)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        sweeper_stop.set()
        await sweeper

    await settle_carts(engine)
    await wait_synced(engine.redis, engine.keys)  # type: ignore[arg-type]
    states = {s.partition: s.state for s in await engine.partition_states()}
    assert set(states.values()) == {"verified"}, states
    worker.stop()
    await worker_task
    await worker_client.aclose()

    await assert_not_oversold(engine, names)
    await assert_consistent(engine, settings)
    await check_carts(engine, ledger)
    lost_reserves, lost_commits, never_reserved, never_committed = await lost_operations(
        engine, ledger, settings.database_url
    )
    mode = "zero-loss" if replicas_ack else "default"
    fenced = sorted({str(r.args[0]) for r in caplog.records if "FENCED" in str(r.msg) and r.args})  # type: ignore[index]
    print(
        f"\n[{mode}] killed primary :{port} (partitions {sorted(victims)}); replica promoted "
        f"{promoted_after:.2f} s after the kill, all served again after {recovered_after:.2f} s; "
        f"{len(ledger.reserved)} reserves and "
        f"{len(ledger.committed)} commits acknowledged, {ledger.refusals} refusals retried; "
        f"lost: {len(lost_reserves)} reserves, {len(lost_commits)} commits; fenced and "
        f"restored from Postgres: partitions {fenced or 'none'}"
    )
    for partition in sorted(outages.hit()):
        spans = ", ".join(f"{s:.2f} s" for s in outages.lasted.get(partition, []))
        seen = ", ".join(sorted(outages.errors.get(partition, set())))
        late = ", ".join(f"{s:.2f} s" for s in outages.slow.get(partition, []))
        print(
            f"[{mode}]   partition {partition}: unavailable {spans or '-'} ({seen or '-'}); "
            f"calls answered late {late or '-'}"
        )
    # A lost operation is one Postgres never received; Postgres has all the others.
    assert lost_reserves == never_reserved, (lost_reserves, never_reserved)
    assert lost_commits <= never_committed, (lost_commits, never_committed)
    assert victims <= outages.hit()
    # The other primaries' partitions sell on (a moment of CLUSTERDOWN aside, while the dead
    # primary's slots have no owner).
    others = {p: max(spans) for p, spans in outages.lasted.items() if spans and p not in victims}
    assert all(span < HEALTHY_HICCUP_S for span in others.values()), others
    if replicas_ack:
        assert not lost_reserves and not lost_commits
    await engine.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
