"""ReservationEngine: the async API around the Lua scripts. Embeddable in any asyncio program.

Every operation on a cart within one partition is one script call. A cart spanning partitions
is driven through a decision record in its home partition (engine/carts.py), so the caller sees
all or nothing, a process dying mid-way leaves nothing half bought, and no hold is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import calls
from engine import events as event
from engine import validation as check
from engine.batching import Batcher
from engine.calls import Call, CartStart, OnHandChange, ReservationPart, ReserveRequest
from engine.carts import CartDriver, CartRecord, status_with_record
from engine.config import EngineSettings
from engine.connection import RedisClient, connect
from engine.errors import (
    IdempotencyConflict,
    InsufficientStock,
    InvalidRequest,
    NotReplicated,
    OverFulfil,
    ReservationNotFound,
    UnknownSku,
)
from engine.fencing import FenceStatus, recovering_error
from engine.fencing import statuses as fence_statuses
from engine.keys import KeySchema, Partition
from engine.placement import Placements
from engine.replication import ReplicaAck
from engine.replies import StaleKeys, decode, level_of, reservation_of, snapshot_of
from engine.scripts import Scripts
from engine.sold_out import SoldOutMarks
from engine.types import (
    ALLOCATION_STRATEGIES,
    CartLine,
    FulfilLine,
    Level,
    Reservation,
    SkuConfig,
    SkuSnapshot,
    datetime_to_ms,
)

_LOCATION_CACHE_SIZE = 100_000
# What a restart or failover of Redis looks like to a client (LOADING is a ConnectionError);
# a script error is not among them: retrying would hide a bug.
_OUTAGE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
_SWEEPER_BACKOFF_MAX_S = 5.0

log = logging.getLogger(__name__)
_EXISTENCE_BATCH_MAX = 1_000  # reservation keys per EXISTS


class ReservationEngine:
    def __init__(self, redis: RedisClient, settings: EngineSettings | None = None) -> None:
        self.redis = redis
        # Defaults, not the environment: a library reads no variables behind its caller's back.
        self.settings = settings or EngineSettings()
        self.keys = KeySchema(self.settings.partitions)
        self.placements = Placements(redis, self.keys)
        self.scripts = Scripts(
            redis,
            self.settings.lua_dir,
            adopt_unverified=not self.settings.fencing,
            ack=ReplicaAck.of(self.settings),
        )
        self._clock_offset_ms = 0
        # reservation id -> its parts, by partition number; a reservation's SKUs never change,
        # and the scripts verify them, so a stale entry costs one retry, never a wrong answer.
        self._located: OrderedDict[str, tuple[ReservationPart, ...]] = OrderedDict()
        self._batchers: dict[int, Batcher[ReserveRequest, bytes]] = {}
        self._existence_checks: dict[int, Batcher[str, bool]] = {}
        self._sold_out = SoldOutMarks(self.settings.sold_out_recheck_ms)
        self._carts = CartDriver(self)
        # Test-only: called with the name of each point where a cart's driver may die
        # (carts.FAULT_POINTS); a test makes it end the process there. None in production.
        self.fault_hook: Callable[[str], None] | None = None

    @property
    def clock_offset_ms(self) -> int:
        """Test-only: shifts the time every script reads from Redis TIME. Always 0 in production."""
        return self._clock_offset_ms

    @clock_offset_ms.setter
    def clock_offset_ms(self, value: int) -> None:
        # Holds may have expired in the jump: what this process believed sold out may not be.
        self._sold_out.clear_all()
        self._clock_offset_ms = value

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> ReservationEngine:
        return cls(connect(settings), settings)

    async def start(self) -> None:
        await self.scripts.load_all(self.redis)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def ready(self) -> bool:
        """Runs a real script (not PING): proves Redis answers and the scripts run."""
        try:
            probe = calls.snapshot_call(
                self.keys.partition(0), "readiness-probe", self.settings, self.clock_offset_ms
            )
            await self._run("snapshot", probe)
        except UnknownSku:
            return True
        return True

    async def partition_states(self) -> Sequence[FenceStatus]:
        """Each partition's fence status as its Redis server sees it (engine.fencing)."""
        return await fence_statuses(self.scripts["fence"], self.keys)

    # ---- SKU administration -------------------------------------------------------------

    async def configure_sku(
        self, sku: str, config: SkuConfig, *, reason: str = "correction", reference: str = ""
    ) -> bool:
        """Creates or replaces a SKU's configuration. Returns True when it was created."""
        check.check_id("sku", sku)
        check.check_reason(reason)
        if config.allocation_strategy not in ALLOCATION_STRATEGIES:
            raise InvalidRequest(f"allocation_strategy must be one of {ALLOCATION_STRATEGIES}")
        for loc in config.locations:
            check.check_id("location", loc.location)
        check.check_time("sale_starts_at", config.sale_starts_at)
        check.check_time("sale_ends_at", config.sale_ends_at)
        if config.placement_group is not None:
            check.check_id("placement_group", config.placement_group)
        reference = check.check_reference(reference)
        part = await self.placements.claim(sku, config.placement_group)
        payload = {
            "locations": [
                {
                    "location": loc.location,
                    "on_hand": loc.on_hand,
                    "safety_stock": loc.safety_stock,
                    "backorder_limit": loc.backorder_limit,
                    "incoming": loc.incoming,
                }
                for loc in config.locations
            ],
            "purchase_limit": config.purchase_limit,
            "max_active_holds_per_customer": config.max_active_holds_per_customer,
            "max_extensions": config.max_extensions,
            "allocation_strategy": config.allocation_strategy,
            "low_stock_threshold": config.low_stock_threshold,
            "backorder_lead_days": config.backorder_lead_days,
            "sale_starts_at": _ms_or_none(config.sale_starts_at),
            "sale_ends_at": _ms_or_none(config.sale_ends_at),
            "placement_group": config.placement_group or None,
        }
        call = calls.configure_sku_call(
            part, sku, payload, reason, reference, self.settings, self.clock_offset_ms
        )
        reply = await self._run("configure_sku", call)
        self._sold_out.clear([sku])
        return bool(reply["created"])

    async def inventory(self, sku: str) -> SkuSnapshot:
        check.check_id("sku", sku)
        call = calls.snapshot_call(
            await self._partition_of(sku), sku, self.settings, self.clock_offset_ms
        )
        return snapshot_of(sku, await self._run("snapshot", call))

    async def sku_config(self, sku: str) -> SkuConfig | None:
        try:
            return (await self.inventory(sku)).config
        except UnknownSku:
            return None

    async def restock(
        self,
        sku: str,
        location: str,
        quantity: int,
        *,
        reason: str = "restock",
        reference: str = "",
        idempotency_key: str | None = None,
    ) -> Level:
        check.check_quantity(sku, quantity, check.QUANTITY_LIMIT)
        return await self._change_on_hand(
            OnHandChange(
                sku=sku,
                location=location,
                mode="delta",
                quantity=quantity,
                event=event.RESTOCKED,
                reason=reason,
                reference=reference,
                idempotency_key=idempotency_key,
            )
        )

    async def adjust(
        self,
        sku: str,
        location: str,
        delta: int,
        *,
        reason: str,
        reference: str = "",
        idempotency_key: str | None = None,
    ) -> Level:
        if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
            raise InvalidRequest("delta must be a non-zero integer", field="delta")
        return await self._change_on_hand(
            OnHandChange(
                sku=sku,
                location=location,
                mode="delta",
                quantity=delta,
                event=event.ADJUSTED,
                reason=reason,
                reference=reference,
                idempotency_key=idempotency_key,
            )
        )

    async def set_on_hand(
        self,
        sku: str,
        location: str,
        on_hand: int,
        *,
        reason: str = "correction",
        reference: str = "",
        change_from_quantity: int | None = None,
    ) -> Level:
        if isinstance(on_hand, bool) or not isinstance(on_hand, int) or on_hand < 0:
            raise InvalidRequest("on_hand must be an integer >= 0", field="on_hand")
        return await self._change_on_hand(
            OnHandChange(
                sku=sku,
                location=location,
                mode="set",
                quantity=on_hand,
                event=event.ON_HAND_SET,
                reason=reason,
                reference=reference,
                change_from=change_from_quantity,
            )
        )

    async def _change_on_hand(self, change: OnHandChange) -> Level:
        check.check_id("sku", change.sku)
        check.check_id("location", change.location)
        check.check_reason(change.reason)
        change = replace(change, reference=check.check_reference(change.reference))
        fingerprint = ""
        if change.idempotency_key is not None:
            check.check_id("idempotency_key", change.idempotency_key)
            fingerprint = request_fingerprint(
                [
                    change.sku,
                    change.location,
                    change.mode,
                    change.quantity,
                    change.change_from,
                    change.reason,
                    change.reference,
                ]
            )
        part = await self._partition_of(change.sku)
        call = calls.change_on_hand_call(
            part, change, fingerprint, self.settings, self.clock_offset_ms
        )
        try:
            reply = await self._run("change_on_hand", call)
        except IdempotencyConflict:
            raise IdempotencyConflict(idempotency_key=change.idempotency_key) from None
        self._sold_out.clear([change.sku])
        return level_of(change.location, reply)

    # ---- Reservations -------------------------------------------------------------------

    async def reserve(
        self,
        reservation_id: str,
        customer_id: str,
        lines: Sequence[CartLine],
        ttl_seconds: int | None = None,
    ) -> Reservation:
        """Holds every line or none. The same id with the same request returns the first answer."""
        ttl = self._check_reserve(reservation_id, customer_id, lines, ttl_seconds)
        refusal = await self._sold_out_refusal(reservation_id, lines, new_id=False)
        if refusal is not None:
            raise refusal
        fingerprint = request_fingerprint(
            [customer_id, ttl, [[ln.sku, ln.quantity, ln.location or ""] for ln in lines]]
        )
        groups: dict[int, list[CartLine]] = {}
        for line in lines:
            groups.setdefault((await self._partition_of(line.sku)).number, []).append(line)
        parts = tuple(ReservationPart(n, _skus_of(groups[n])) for n in sorted(groups))
        # A fresh incarnation, kept only if this call creates the reservation (a replay answers
        # the stored one); a spanning cart's record keeps it for every part.
        incarnation = secrets.token_hex(8)
        if len(parts) > 1:
            start = CartStart(
                reservation_id, customer_id, fingerprint, incarnation, parts, lines, ttl * 1000
            )
            reservation = await self._carts.reserve(start)
        else:
            request = ReserveRequest(
                reservation_id, customer_id, ttl * 1000, fingerprint, lines, incarnation
            )
            reply = await self._reserve_part(self.keys.partition(parts[0].number), request)
            reservation = reservation_of(reservation_id, [reply])
        self._remember(reservation_id, parts)
        return reservation

    async def local_refusal(
        self,
        reservation_id: str,
        customer_id: str,
        lines: Sequence[CartLine],
        ttl_seconds: int | None = None,
        *,
        new_id: bool = False,
    ) -> InsufficientStock | None:
        """The refusal `reserve` would answer from memory (sold-out fast path), or None.

        For a caller with per-request Redis work of its own before `reserve` (the API's rate
        limiter): a sold-out sale then costs Redis at most a share of one batched existence
        check per refusal, nothing at all for an id the caller has just made up (`new_id`: it
        cannot name an earlier attempt). The request is checked first, as `reserve` checks it, so
        a client's mistake is still named as such.
        """
        self._check_reserve(reservation_id, customer_id, lines, ttl_seconds)
        return await self._sold_out_refusal(reservation_id, lines, new_id=new_id)

    def _check_reserve(
        self,
        reservation_id: str,
        customer_id: str,
        lines: Sequence[CartLine],
        ttl_seconds: int | None,
    ) -> int:
        """Raises on a request Redis would refuse as malformed; returns the TTL in seconds."""
        check.check_id("reservation_id", reservation_id)
        check.check_id("customer_id", customer_id)
        check.check_cart(lines, self.settings)
        return check.check_ttl(
            self.settings.hold_ttl_seconds if ttl_seconds is None else ttl_seconds, self.settings
        )

    async def _sold_out_refusal(
        self, reservation_id: str, lines: Sequence[CartLine], *, new_id: bool
    ) -> InsufficientStock | None:
        if reservation_id in self._located:  # a replay of our own reservation: Redis answers it
            return None
        refusal = self._sold_out.refusal(lines, reservation_id)
        if refusal is None or new_id:
            return refusal
        # The id may name an attempt that won through another process (another API worker) and
        # whose answer was lost: then the retry must get that answer, not "sold out". Had the
        # attempt held anything, its reservation key exists in the refused SKU's partition.
        if await self._reservation_exists(reservation_id, refusal.sku):
            return None
        return refusal

    async def _reservation_exists(self, reservation_id: str, sku: str) -> bool:
        part = await self._partition_of(sku)
        lane = self._existence_checks.get(part.number)
        if lane is None:
            # Under load every refusal arriving while a check is out waits for the next one, so
            # a sold-out storm costs a few EXISTS, not one each. A key costs Redis a lookup, so
            # a batch may be far larger than a reserve batch.
            lane = self._existence_checks[part.number] = Batcher(
                self._any_exists, _EXISTENCE_BATCH_MAX, self.settings.reserve_batches_in_flight
            )
        return await lane.submit(part.reservation(reservation_id))

    async def _any_exists(self, keys: list[str]) -> list[bool]:
        # One EXISTS for the whole batch (its keys share the partition's slot). It counts, not
        # names: if any key exists, every request of the batch goes on to the reserve script,
        # which answers each exactly (a refusal again for the ids that were never used).
        found = int(await self.redis.exists(*keys)) > 0
        return [found] * len(keys)

    async def _reserve_part(self, part: Partition, request: ReserveRequest) -> dict[str, Any]:
        batcher = self._batchers.get(part.number)
        if batcher is None:
            batcher = self._batchers[part.number] = Batcher(
                lambda requests: self._send_reserve_batch(part, requests),
                self.settings.reserve_batch_max,
                self.settings.reserve_batches_in_flight,
            )
        raw = await batcher.submit(request)
        try:
            reply = decode(raw)
        except InsufficientStock as exc:
            if exc.sold_out:
                self._sold_out.mark(exc.sku)
            raise
        self._sold_out.held(request.lines)  # a recheck found units again
        return reply

    async def _send_reserve_batch(
        self, part: Partition, requests: list[ReserveRequest]
    ) -> list[bytes]:
        keys, args = calls.reserve_call(part, requests, self.settings, self.clock_offset_ms)
        raws: list[bytes] = await self.scripts["reserve"](keys=keys, args=args)
        return raws

    async def get_reservation(self, reservation_id: str) -> Reservation:
        check.check_id("reservation_id", reservation_id)
        replies = await self._read_parts(reservation_id)
        found = [r for r in replies.values() if not r.get("missing")]
        if not found:
            raise ReservationNotFound(reservation_id=reservation_id)
        now = max(int(r["now"]) for r in replies.values())
        reservation = reservation_of(reservation_id, found, now)
        record = _record_of(reservation_id, replies)
        if record is not None:
            status = status_with_record(record.state, record.ends_as, reservation.status)
            if status is None:  # a cart still being reserved, or refused: not there for a reader
                raise ReservationNotFound(reservation_id=reservation_id)
            reservation = replace(reservation, status=status)
        self._remember(reservation_id, _parts_of(replies))
        return reservation

    async def extend(
        self,
        reservation_id: str,
        ttl_seconds: int | None = None,
        *,
        incarnation: str | None = None,
    ) -> Reservation:
        """A new deadline for a held reservation. `incarnation` (None: any) is the one a
        caller's token names: a reservation whose id was reused since is refused
        (IncarnationMismatch), checked by the script that acts."""
        check.check_id("reservation_id", reservation_id)
        ttl = check.check_ttl(
            self.settings.hold_ttl_seconds if ttl_seconds is None else ttl_seconds, self.settings
        )
        parts = await self._locate(reservation_id)
        if len(parts) > 1:
            return await self._carts.extend(parts, reservation_id, ttl, incarnation)
        replies = [
            await self._on_part(
                "extend",
                reservation_id,
                part,
                lambda p: calls.extend_call(
                    p, reservation_id, ttl, self.settings, self.clock_offset_ms, incarnation
                ),
            )
            for part in parts
        ]
        return reservation_of(reservation_id, replies)

    async def commit(
        self, reservation_id: str, order_id: str, *, incarnation: str | None = None
    ) -> Reservation:
        """Held -> committed, every part or none. `incarnation` as for `extend`."""
        check.check_id("reservation_id", reservation_id)
        check.check_id("order_id", order_id)
        parts = await self._locate(reservation_id)
        if len(parts) > 1:
            return await self._carts.commit(parts, reservation_id, order_id, incarnation)
        reply = await self._on_part(
            "commit",
            reservation_id,
            parts[0],
            lambda p: calls.commit_call(
                p, reservation_id, order_id, self.settings, self.clock_offset_ms, incarnation
            ),
        )
        return reservation_of(reservation_id, [reply])

    async def fulfil(
        self,
        reservation_id: str,
        lines: Sequence[FulfilLine] | None = None,
        *,
        fulfilment_id: str | None = None,
        incarnation: str | None = None,
    ) -> Reservation:
        check.check_id("reservation_id", reservation_id)
        if lines is not None:
            check.check_fulfil_lines(lines)
        if fulfilment_id is not None:
            check.check_id("fulfilment_id", fulfilment_id)
        parts = await self._locate(reservation_id)
        if lines is not None:
            held = {sku for part in parts for sku in part.skus}
            for line in lines:
                if line.sku not in held:
                    raise OverFulfil(
                        sku=line.sku,
                        location=line.location or "",
                        requested=line.quantity,
                        remaining=0,
                    )
        plan = [
            (part, None if lines is None else [ln for ln in lines if ln.sku in part.skus])
            for part in parts
        ]
        plan = [(part, mine) for part, mine in plan if mine is None or mine]
        if len(plan) > 1:
            # Every partition checks its share before any ships: a refusal in a later one must
            # not come after an earlier one shipped (a corrected retry would ship it twice).
            for part, mine in plan:
                await self._fulfil_part(
                    reservation_id, part, mine, fulfilment_id, incarnation, check_only=True
                )
        replies = [
            await self._fulfil_part(reservation_id, part, mine, fulfilment_id, incarnation)
            for part, mine in plan
        ]
        if len(replies) == len(parts):
            if len(parts) > 1 and all(r["st"] == "fulfilled" for r in replies):
                await self._carts.fulfilled(parts, reservation_id)
            return reservation_of(reservation_id, replies)
        return await self.get_reservation(reservation_id)  # parts this fulfilment did not touch

    async def _fulfil_part(
        self,
        reservation_id: str,
        part: ReservationPart,
        lines: list[FulfilLine] | None,
        fulfilment_id: str | None,
        incarnation: str | None,
        *,
        check_only: bool = False,
    ) -> dict[str, Any]:
        return await self._on_part(
            "fulfil",
            reservation_id,
            part,
            partial(
                calls.fulfil_call,
                reservation_id=reservation_id,
                lines=lines,
                fulfilment_id=fulfilment_id,
                settings=self.settings,
                clock_offset_ms=self.clock_offset_ms,
                check_only=check_only,
                incarnation=incarnation,
            ),
        )

    async def release(
        self, reservation_id: str, *, incarnation: str | None = None
    ) -> Reservation | None:
        """Gives the units back. Idempotent: an unknown or finished reservation is left as it is.
        `incarnation` as for `extend`."""
        check.check_id("reservation_id", reservation_id)
        try:
            parts = await self._locate(reservation_id)
            if len(parts) > 1:
                return await self._carts.release(parts, reservation_id, incarnation)
            reply = await self._release_part(reservation_id, parts[0], incarnation=incarnation)
            return reservation_of(reservation_id, [reply])
        except ReservationNotFound:
            return None

    async def _release_part(
        self,
        reservation_id: str,
        part: ReservationPart,
        *,
        forget: bool = False,
        incarnation: str | None = None,
    ) -> dict[str, Any]:
        return await self._on_part(
            "release",
            reservation_id,
            part,
            lambda p: calls.release_call(
                p, reservation_id, self.settings, self.clock_offset_ms, forget, incarnation
            ),
        )

    # ---- Expiry --------------------------------------------------------------------------

    async def sweep(self, *, batch: int = 200) -> int:
        """Reclaims every due hold on every SKU (bounded per call of the script), and finishes
        the carts spanning partitions that a process left mid-way. Returns holds reclaimed."""
        await self._carts.recover()
        return sum([await self._sweep_partition(part, batch) for part in self.keys.all()])

    async def _sweep_partition(self, part: Partition, batch: int) -> int:
        total, cursor = 0, 0
        while True:
            cursor, members = await self.redis.sscan(part.skus, cursor, count=batch)
            pending = [m.decode() if isinstance(m, bytes) else m for m in members]
            while pending:
                raws = await self._expire_all(part, pending)
                if _recovering(raws):
                    return total  # nothing is reclaimed there until it is verified
                replies = [decode(raw) for raw in raws]
                self._sold_out.clear(
                    sku for sku, r in zip(pending, replies, strict=True) if r["reclaimed"]
                )
                total += sum(int(r["reclaimed"]) for r in replies)
                pending = [sku for sku, r in zip(pending, replies, strict=True) if r["more"]]
            if cursor == 0:
                return total

    async def _expire_all(self, part: Partition, skus: list[str]) -> list[Any]:
        """One pipelined `expire` per SKU; in zero-loss mode one WAIT behind all of them."""
        expire = self.scripts["expire"]
        if self.scripts.acked is not None:
            commands = []
            for sku in skus:
                keys, args = calls.expire_call(part, sku, self.settings, self.clock_offset_ms)
                commands.append(("EVALSHA", expire.sha, len(keys), *keys, *args))
            return await self.scripts.acked.execute(part.skus, commands)
        async with self.redis.pipeline(transaction=False) as pipe:
            for sku in skus:
                keys, args = calls.expire_call(part, sku, self.settings, self.clock_offset_ms)
                await expire(keys=keys, args=args, client=pipe)
            raws: list[Any] = await pipe.execute(raise_on_error=False)
        return raws

    async def run_sweeper(self, stop: asyncio.Event, interval: float | None = None) -> None:
        """Sweeps every `interval` seconds until `stop` is set. A Redis outage is waited out
        (retries back off from 0.1 s to 5 s), logged once when it starts and once when it ends."""
        period = self.settings.sweeper_interval_seconds if interval is None else interval
        failures = 0
        while not stop.is_set():
            try:
                await self.sweep()
            except (*_OUTAGE, NotReplicated) as exc:
                if failures == 0:
                    log.warning("sweeper: Redis unavailable (%s); retrying with backoff", exc)
                failures += 1
                pause = min(_SWEEPER_BACKOFF_MAX_S, 0.1 * 2 ** min(failures - 1, 10))
            else:
                if failures:
                    log.info("sweeper: Redis reachable again after %d failed pass(es)", failures)
                failures, pause = 0, period
            try:
                await asyncio.wait_for(stop.wait(), timeout=pause)
            except TimeoutError:
                pass

    # ---- Plumbing ------------------------------------------------------------------------

    async def _partition_of(self, sku: str) -> Partition:
        return await self.placements.partition(sku)

    async def _run(self, name: str, call: Call) -> dict[str, Any]:
        keys, args = call
        return decode(await self.scripts[name](keys=keys, args=args))

    async def _on_part(
        self,
        name: str,
        reservation_id: str,
        part: ReservationPart,
        call: Callable[[ReservationPart], Call],
    ) -> dict[str, Any]:
        """Runs a script on one reservation part, re-reading its SKU list once if it was stale."""
        for attempt in range(2):
            try:
                reply = await self._run(name, call(part))
            except StaleKeys:
                if attempt:  # the id was reused twice in a row under us: it is not the one asked
                    raise ReservationNotFound(reservation_id=reservation_id) from None
                self._located.pop(reservation_id, None)
                fresh = {p.number: p for p in _parts_of(await self._read_parts(reservation_id))}
                if part.number not in fresh:
                    raise ReservationNotFound(reservation_id=reservation_id) from None
                part = fresh[part.number]
                continue
            if name == "release":
                self._sold_out.clear(part.skus)
            return reply
        raise AssertionError("unreachable")

    async def _locate(self, reservation_id: str) -> tuple[ReservationPart, ...]:
        cached = self._located.get(reservation_id)
        if cached is not None:
            return cached
        replies = await self._read_parts(reservation_id)
        if not replies:
            raise ReservationNotFound(reservation_id=reservation_id)
        parts = _parts_of(replies)
        if not parts:  # a spanning cart whose parts are not there (yet, or any more)
            raise ReservationNotFound(reservation_id=reservation_id)
        record = _record_of(reservation_id, replies)
        # A cart still being reserved may yet be refused, which frees its id for another cart.
        if record is None or record.state != "reserving":
            self._remember(reservation_id, parts)
        return parts

    async def _read_parts(
        self, reservation_id: str, parts: Sequence[ReservationPart] | None = None
    ) -> dict[int, dict[str, Any]]:
        """What each partition (or each of `parts`) has of the reservation: its part, and the
        decision record in a spanning cart's home partition (`missing` = a record, no part)."""
        partitions = (
            self.keys.all() if parts is None else [self.keys.partition(p.number) for p in parts]
        )
        found: dict[int, dict[str, Any]] = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in partitions:
                keys, args = calls.get_reservation_call(
                    partition, reservation_id, self.clock_offset_ms
                )
                await self.scripts["get_reservation"](keys=keys, args=args, client=pipe)
            raws = await pipe.execute()
        for partition, raw in zip(partitions, raws, strict=True):
            try:
                found[partition.number] = decode(raw)
            except ReservationNotFound:
                continue
        return found

    def _remember(self, reservation_id: str, parts: tuple[ReservationPart, ...]) -> None:
        self._located[reservation_id] = parts
        self._located.move_to_end(reservation_id)
        if len(self._located) > _LOCATION_CACHE_SIZE:
            self._located.popitem(last=False)


def _skus_of(lines: Sequence[CartLine]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(line.sku for line in lines))


def _parts_of(replies: dict[int, dict[str, Any]]) -> tuple[ReservationPart, ...]:
    """A reservation's parts: as its decision record names them when it spans partitions (some
    may not exist yet, or any more), else the ones get_reservation found, by partition."""
    record = _record_of("", replies)
    if record is not None:
        return record.parts
    return tuple(ReservationPart(n, tuple(replies[n]["skus"].split("\n"))) for n in sorted(replies))


def _record_of(reservation_id: str, replies: dict[int, dict[str, Any]]) -> CartRecord | None:
    for reply in replies.values():
        if "cart" in reply:
            return CartRecord.of({"rid": reservation_id, **reply["cart"]})
    return None


def request_fingerprint(value: object) -> str:
    """Identifies a request for idempotency (also rebuilt by restore from Postgres)."""
    return hashlib.blake2b(orjson.dumps(value), digest_size=10).hexdigest()


def _ms_or_none(value: Any) -> int | None:
    return None if value is None else datetime_to_ms(value)


def _recovering(raws: list[Any]) -> bool:
    """True when a pipeline's script replies say the partition is not verified (engine.fencing);
    any other error among them is raised."""
    for raw in raws:
        if isinstance(raw, Exception):
            if recovering_error(raw) is not None:
                return True
            raise raw
    return False
