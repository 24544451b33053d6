"""Random sequences of every operation against a small pure-Python model of the quantities
and operations in docs/architecture.md.

After every step the engine's answers equal the model's, Redis quantities equal the model's, and
the invariants hold (tests/engine_support.check_invariants). Time moves with the engine's test
clock offset in 150 s steps against TTLs of 100/200 s, so real time never decides an outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from engine import CartLine, ReservationEngine
from engine import errors as e
from tests.conftest import RedisTarget
from tests.engine_support import check_invariants, make_engine, sku

LOCATIONS = {"a": {"x": 3, "y": 2}, "b": {"z": 4}}
BACKORDER = {("a", "y"): 1}
LIMIT = {"a": 3, "b": 0}
STEP_MS = 150_000


@dataclass
class Res:
    customer: str
    allocs: list[tuple[str, str, int]]  # sku, location, quantity
    status: str
    deadline: int
    late: dict[tuple[str, str], int] = field(default_factory=dict)  # backordered units
    order: str | None = None
    ext: int = 0


@dataclass
class Model:
    now: int = 0
    on_hand: dict[tuple[str, str], int] = field(default_factory=dict)
    committed: dict[tuple[str, str], int] = field(default_factory=dict)
    res: dict[str, Res] = field(default_factory=dict)

    def status(self, rid: str) -> str:
        r = self.res[rid]
        return "expired" if r.status == "held" and r.deadline <= self.now else r.status

    def reserved(self, key: tuple[str, str]) -> int:
        held = (r for rid, r in self.res.items() if self.status(rid) == "held")
        return sum(q for r in held for s, loc, q in r.allocs if (s, loc) == key)

    def available(self, key: tuple[str, str]) -> int:
        return self.on_hand[key] - self.reserved(key) - self.committed[key]

    def backorder_in_stock(self, key: tuple[str, str]) -> int:
        """Backordered units that may ship: available plus the backordered units committed."""
        late = sum(r.late.get(key, 0) for rid, r in self.res.items() if r.status == "committed")
        return max(0, self.available(key) + late)

    def sold_out(self, s: str) -> bool:
        """No unit and no backorder room anywhere: the engine may refuse from its sold-out marks."""
        return all(
            self.available((s, loc)) + BACKORDER.get((s, loc), 0) <= 0 for loc in LOCATIONS[s]
        )

    def units(self, customer: str, s: str) -> int:
        active = (r for rid, r in self.res.items() if self.status(rid) in ("held", "committed"))
        return sum(q for r in active if r.customer == customer for sk, _, q in r.allocs if sk == s)

    def reserve(self, customer: str, lines: list[tuple[str, int]]) -> Any:
        for s in dict.fromkeys(sk for sk, _ in lines):
            wanted = sum(q for sk, q in lines if sk == s)
            if LIMIT[s] and self.units(customer, s) + wanted > LIMIT[s]:
                return e.PurchaseLimitExceeded
        taken: dict[tuple[str, str], int] = {}
        late: dict[tuple[str, str], int] = {}
        allocs: list[tuple[str, str, int]] = []
        ends: list[int] = []
        for s, qty in lines:
            need = qty
            for backorder in (False, True):
                for loc in LOCATIONS[s]:
                    key = (s, loc)
                    room = self.available(key) - taken.get(key, 0)
                    room = room + BACKORDER.get(key, 0) if backorder else room
                    q = min(need, max(0, room))
                    if q:
                        taken[key] = taken.get(key, 0) + q
                        if backorder:
                            late[key] = late.get(key, 0) + q
                        allocs.append((s, loc, q))
                        need -= q
            ends.append(len(allocs))
            if need:
                return e.InsufficientStock
        merged: dict[tuple[str, str, int], int] = {}  # the engine merges a line's passes
        for n, (s, loc, q) in enumerate(allocs):
            line = next(i for i, end in enumerate(ends) if n < end)
            merged[(s, loc, line)] = merged.get((s, loc, line), 0) + q
        return [(s, loc, q) for (s, loc, _), q in merged.items()], late


class EngineMachine(RuleBasedStateMachine):
    redis_url = ""
    cluster = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        # On the cluster (16 partitions) "a" and "b" live in different partitions, so every cart
        # naming both is a cart spanning partitions, driven through its decision record.
        self.engine: ReservationEngine = self.run(make_engine(self.redis_url, cluster=self.cluster))
        self.run(self.engine.redis.flushall())
        self.model = Model()
        for s, locs in LOCATIONS.items():
            cfg = sku(
                locs,
                purchase_limit=LIMIT[s],
                max_extensions=1,
                backorder_limit={loc: BACKORDER.get((s, loc), 0) for loc in locs},
            )
            self.run(self.engine.configure_sku(s, cfg))
            for loc, q in locs.items():
                self.model.on_hand[(s, loc)] = q
                self.model.committed[(s, loc)] = 0
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        # Stream sums, hold members and customer counters: once per sequence, at its end.
        self.run(check_invariants(self.engine, list(LOCATIONS)))
        self.run(self.engine.aclose())
        self.loop.close()

    def outcome(self, coro: Any) -> Any:
        try:
            return self.run(coro)
        except e.EngineError as exc:
            return type(exc)

    rids = st.integers(min_value=1, max_value=12).map(lambda n: f"r{n}")

    @rule(
        customer=st.sampled_from(["c0", "c1", "c2"]),
        lines=st.lists(
            st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 3)), min_size=1, max_size=2
        ),
        ttl=st.sampled_from([100, 200]),
    )
    def reserve(self, customer: str, lines: list[tuple[str, int]], ttl: int) -> None:
        self.counter += 1
        rid = f"r{self.counter}"
        expected = self.model.reserve(customer, lines)
        got = self.outcome(
            self.engine.reserve(rid, customer, [CartLine(s, q) for s, q in lines], ttl)
        )
        if isinstance(expected, tuple):
            allocs, late = expected
            assert not isinstance(got, type), got
            assert sorted(
                (ln.sku, a.location, a.quantity) for ln in got.lines for a in ln.allocations
            ) == sorted(allocs)
            got_late: dict[tuple[str, str], int] = {}
            for ln in got.lines:
                for a in ln.allocations:
                    if a.backordered:
                        key = (ln.sku, a.location)
                        got_late[key] = got_late.get(key, 0) + a.backordered
            assert got_late == late
            r = Res(customer, allocs, "held", self.model.now + ttl * 1000, late=late)
            self.model.res[rid] = r
        elif got is not expected:
            # The sold-out fast path answers "insufficient stock" before the checks Redis would
            # make first (a purchase limit); it must never refuse a cart that could be held.
            assert got is e.InsufficientStock, (got, expected)
            assert any(self.model.sold_out(s) for s, _ in lines), (got, expected)

    @rule(rid=rids)
    def commit(self, rid: str) -> None:
        got = self.outcome(self.engine.commit(rid, f"o-{rid}"))
        if rid not in self.model.res:
            assert got is e.ReservationNotFound
            return
        status, r = self.model.status(rid), self.model.res[rid]
        if status == "held":
            assert not isinstance(got, type) and got.status == "committed"
            r.status, r.order = "committed", f"o-{rid}"
            for s, loc, q in r.allocs:
                self.model.committed[(s, loc)] += q
        elif status == "expired":
            assert got is e.ReservationExpired
            r.status = "expired"
        elif status in ("committed", "fulfilled"):
            assert not isinstance(got, type) and got.replayed
        else:
            assert got is e.InvalidState

    @rule(rid=rids)
    def release(self, rid: str) -> None:
        got = self.outcome(self.engine.release(rid))
        if rid not in self.model.res:
            assert got is None
            return
        status, r = self.model.status(rid), self.model.res[rid]
        if status in ("held", "committed"):
            if status == "committed":
                for s, loc, q in r.allocs:
                    self.model.committed[(s, loc)] -= q
            r.status = "released"
        elif status == "expired":
            r.status = "expired"
        assert got.status == r.status

    @rule(rid=rids)
    def fulfil(self, rid: str) -> None:
        got = self.outcome(self.engine.fulfil(rid))
        if rid not in self.model.res:
            assert got is e.ReservationNotFound
            return
        r = self.model.res[rid]
        if self.model.status(rid) != "committed":
            assert got is e.InvalidState
            return
        need: dict[tuple[str, str], int] = {}
        for s, loc, q in r.allocs:
            need[(s, loc)] = need.get((s, loc), 0) + q
        refusals: set[type[e.EngineError]] = set()
        for k, q in need.items():
            if r.late.get(k, 0) > self.model.backorder_in_stock(k):
                refusals.add(e.BackorderNotInStock)  # the units on hand are owed in stock
            if self.model.on_hand[k] < q:
                refusals.add(e.InvariantViolation)
        if refusals:
            assert got in refusals, (got, refusals)
            return
        assert not isinstance(got, type) and got.status == "fulfilled"
        for k, q in need.items():
            self.model.on_hand[k] -= q
            self.model.committed[k] -= q
        r.status = "fulfilled"

    @rule(rid=rids, ttl=st.sampled_from([100, 200]))
    def extend(self, rid: str, ttl: int) -> None:
        got = self.outcome(self.engine.extend(rid, ttl))
        if rid not in self.model.res:
            assert got is e.ReservationNotFound
            return
        status, r = self.model.status(rid), self.model.res[rid]
        if status == "expired":
            assert got is e.ReservationExpired
            r.status = "expired"
        elif status != "held":
            assert got is e.InvalidState
        elif r.ext >= 1:
            assert got is e.ExtensionLimit
        else:
            assert not isinstance(got, type) and got.extensions == 1
            r.ext, r.deadline = 1, self.model.now + ttl * 1000

    @rule(
        key=st.sampled_from([(s, loc) for s, locs in LOCATIONS.items() for loc in locs]),
        delta=st.sampled_from([-2, -1, 1, 3]),
    )
    def adjust(self, key: tuple[str, str], delta: int) -> None:
        got = self.outcome(self.engine.adjust(key[0], key[1], delta, reason="correction"))
        if self.model.on_hand[key] + delta < 0:
            assert got is e.InvariantViolation
        else:
            assert not isinstance(got, type) and got.on_hand == self.model.on_hand[key] + delta
            self.model.on_hand[key] += delta

    @rule()
    def advance_clock(self) -> None:
        self.model.now += STEP_MS
        self.engine.clock_offset_ms = self.model.now

    @rule()
    def sweep(self) -> None:
        self.run(self.engine.sweep())

    @invariant()
    def redis_equals_model(self) -> None:
        for s in LOCATIONS:
            snap = self.run(self.engine.inventory(s))
            for lvl in snap.locations:
                key = (s, lvl.location)
                assert (lvl.on_hand, lvl.reserved, lvl.committed) == (
                    self.model.on_hand[key],
                    self.model.reserved(key),
                    self.model.committed[key],
                ), key
        for rid in self.model.res:
            assert self.run(self.engine.get_reservation(rid)).status == self.model.status(rid)


@pytest.mark.slow
@pytest.mark.timeout(900)  # the cluster's run flushes three nodes per example
def test_engine_matches_the_model(redis_target: RedisTarget) -> None:
    EngineMachine.redis_url, EngineMachine.cluster = redis_target.url, redis_target.cluster
    run_state_machine_as_test(
        EngineMachine,
        # Fewer examples on the cluster: the rules are the same, each flush costs three nodes.
        settings=settings(
            max_examples=25 if redis_target.cluster else 50, stateful_step_count=30, deadline=None
        ),
    )
