"""Carts spanning partitions: a small distributed transaction with one decision record.

A cart whose SKUs live in one partition is one script call. A cart spanning partitions (possible
only with more than one partition, e.g. on a Redis Cluster) has a part in each partition and a
decision record in its home partition (the lowest-numbered one it spans; lua/cart.lua):

    reserving ──> held ──> committing ──> committed ──> fulfilled
        │           │           │             │
        └──> releasing <────────┴─────────────┘ ──> released | expired | aborted

Every step on a part is idempotent (keyed by the reservation id: a reserve replays, a commit
with the same order replays, a release of a released part changes nothing), so the process
that started an operation, a retry of it, a second API worker and the sweeper can all drive the
same cart and agree. The record's change of state is the commit point: nothing is answered
"held" or "committed" before the record says so; parts are released only after it has left
`held`/`committed` for `releasing`, and a commit that finds it released answers so. The record
sits in its partition's recovery index while transient (reserving, committing, releasing); the
sweeper finishes a record left there longer than `cart_recovery_seconds`: a reserve or commit
forward while every part follows, back (release every part) as soon as one refuses.

A process may die between any two steps: the named points in :data:`FAULT_POINTS` are where the
driver calls the engine's `fault_hook` (a test kills the process there); whatever it leaves is
finished by recovery, and a hold it took without a record to account for it lives no longer than
its TTL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from engine import calls
from engine.calls import CartStart, ReservationPart, ReserveRequest
from engine.errors import (
    EngineError,
    IdempotencyConflict,
    InvalidState,
    ReservationExpired,
    ReservationNotFound,
    reply_of,
)
from engine.replies import decode, reservation_of
from engine.types import CartLine, Reservation, ReservationStatus

if TYPE_CHECKING:
    from engine.engine import ReservationEngine

log = logging.getLogger(__name__)

RESERVING, HELD, COMMITTING, COMMITTED = "reserving", "held", "committing", "committed"
RELEASING, RELEASED, EXPIRED, ABORTED = "releasing", "released", "expired", "aborted"
FULFILLED = "fulfilled"
TRANSIENT = (RESERVING, COMMITTING, RELEASING)
_RECOVERY_BATCH = 100  # records per recovery-index read
_ATTEMPTS = 3  # a reserve joining an attempt another driver refuses meanwhile starts again

# Where a driver may die, in the order an operation passes them; ":<i>" follows the i-th part.
FAULT_POINTS = (
    "reserve:begun",
    "reserve:part:<i>",
    "reserve:decided",
    "commit:committing",
    "commit:part:<i>",
    "commit:decided",
    "back-out:releasing",
    "release:releasing",
    "release:part:<i>",
    "release:decided",
)


@dataclass(frozen=True, slots=True)
class CartRecord:
    """A cart's decision record, as cart.lua answers it."""

    reservation_id: str
    state: str
    fingerprint: str
    customer_id: str
    incarnation: str
    parts: tuple[ReservationPart, ...]
    lines: tuple[CartLine, ...]
    ttl_ms: int
    order_id: str
    ends_as: str  # where `releasing` ends: released, expired or aborted
    refusal: str  # the refusal that ended it (a script reply), or ""
    changed: bool  # this call created or moved it

    @classmethod
    def of(cls, reply: dict[str, Any]) -> CartRecord:
        parts = tuple(
            ReservationPart(int(n), tuple(skus.split("\n")))
            for n, skus in orjson.loads(reply["parts"])
        )
        lines = tuple(
            CartLine(sku=s, quantity=int(q), location=loc or None)
            for s, q, loc in orjson.loads(reply["lines"])
        )
        return cls(
            reservation_id=reply["rid"],
            state=reply["st"],
            fingerprint=reply["fp"],
            customer_id=reply["cust"],
            incarnation=reply.get("gen", ""),
            parts=parts,
            lines=lines,
            ttl_ms=int(reply["ttl"]),
            order_id=reply.get("ord", ""),
            ends_as=reply.get("to", ""),
            refusal=reply.get("why", ""),
            changed=int(reply.get("changed", 0)) == 1,
        )

    def lines_in(self, part: ReservationPart) -> list[CartLine]:
        return [line for line in self.lines if line.sku in part.skus]


def status_with_record(
    state: str, ends_as: str, merged: ReservationStatus
) -> ReservationStatus | None:
    """A spanning cart's status as its record allows: None while it does not exist for a reader
    (still reserving, or aborted), `held` until a commit is decided, `released` once a release
    has begun. `merged` is what its parts say (the least advanced of them)."""
    if state in (RESERVING, ABORTED) or (state == RELEASING and ends_as == ABORTED):
        return None
    if state == COMMITTING and merged in ("committed", "fulfilled"):
        return "held"
    if state == RELEASING and merged != "expired":
        return "released"
    return merged


class CartDriver:
    """Drives carts spanning partitions for one engine (its scripts, batches and caches)."""

    def __init__(self, engine: ReservationEngine) -> None:
        self._engine = engine

    # ---- Operations ----------------------------------------------------------------------

    async def reserve(self, start: CartStart) -> Reservation:
        engine = self._engine
        home = engine.keys.partition(start.parts[0].number)
        call = calls.cart_begin_call(home, start, engine.settings, engine.clock_offset_ms)
        for _ in range(_ATTEMPTS):
            record = first = CartRecord.of(await engine._run("cart", call))
            if first.changed:
                self._fault("reserve:begun")
            replies: list[dict[str, Any]] = []
            if record.state in TRANSIENT:  # ours, or a retry finding an earlier attempt under way
                record = await self.drive(record, replies)
            if record.state != ABORTED:
                return await self.answer(record, replayed=not first.changed, replies=replies)
            if record.refusal:
                raise decode_refusal(record.refusal)
            # The attempt this call joined was refused and forgotten by another driver before
            # this one could finish it: the id is free again, so the request starts afresh.
        raise ReservationNotFound(reservation_id=start.reservation_id)

    async def commit(
        self,
        parts: tuple[ReservationPart, ...],
        rid: str,
        order_id: str,
        incarnation: str | None = None,
    ) -> Reservation:
        record = await self._decide(
            parts,
            rid,
            (HELD,),
            COMMITTING,
            transient=True,
            expiry_ms=-1,
            fields={"ord": order_id},
            incarnation=incarnation,
        )
        if record.changed:
            self._fault("commit:committing")
        elif record.state in (COMMITTING, COMMITTED, FULFILLED):
            if record.order_id != order_id:
                raise IdempotencyConflict(reservation_id=rid, order_id=record.order_id)
            if record.state != COMMITTING:
                return await self.answer(record, replayed=True)
        else:
            raise self._state_error(record, expected=HELD)
        replies: list[dict[str, Any]] = []
        record = await self.drive(record, replies)
        if record.state == COMMITTED:
            return await self.answer(record, replies=replies)
        raise self._state_error(record, expected=HELD)

    async def release(
        self, parts: tuple[ReservationPart, ...], rid: str, incarnation: str | None = None
    ) -> Reservation:
        leaving = (RESERVING, HELD, COMMITTING, COMMITTED)
        record = await self._decide(
            parts,
            rid,
            leaving,
            RELEASING,
            transient=True,
            fields={"to": RELEASED},
            incarnation=incarnation,
        )
        if record.changed:
            self._fault("release:releasing")
        if record.state == RELEASING:
            record = await self.drive(record)
        return await self.answer(record)

    async def extend(
        self,
        parts: tuple[ReservationPart, ...],
        rid: str,
        ttl_seconds: int,
        incarnation: str | None = None,
    ) -> Reservation:
        engine = self._engine
        # One call checks the record is held (and the caller's token) and lengthens its life to
        # the new deadline's; each part's script checks the token again as it extends.
        life = ttl_seconds * 1000 + engine.settings.retention_seconds * 1000
        record = await self._decide(
            parts, rid, (HELD,), HELD, expiry_ms=life, incarnation=incarnation
        )
        if not record.changed:
            raise self._state_error(record, expected=HELD)
        replies = []
        try:
            for part in record.parts:
                replies.append(
                    await engine._on_part(
                        "extend",
                        rid,
                        part,
                        lambda p: calls.extend_call(
                            p,
                            rid,
                            ttl_seconds,
                            engine.settings,
                            engine.clock_offset_ms,
                            incarnation,
                        ),
                    )
                )
        except ReservationExpired as exc:
            # One part's hold is gone, so the cart can no longer be bought whole: give the
            # others back now rather than at their (possibly just extended) deadlines.
            await self._back_out(record, (HELD,), EXPIRED, exc)
            raise
        return reservation_of(rid, replies)

    async def fulfilled(self, parts: tuple[ReservationPart, ...], rid: str) -> None:
        """Every part has shipped: the record may go with them after the retention time."""
        retention = self._engine.settings.retention_seconds * 1000
        await self._decide(parts, rid, (COMMITTED,), FULFILLED, expiry_ms=retention)

    # ---- Driving a record to its next resting state ---------------------------------------

    async def drive(
        self, record: CartRecord, replies: list[dict[str, Any]] | None = None
    ) -> CartRecord:
        """Takes a transient record one state further (any process may, any number of times).
        `replies` collects the parts' answers to a reserve or commit, so the caller can answer
        from them without reading the parts again."""
        if record.state == RESERVING:
            return await self._reserve_parts(record, [] if replies is None else replies)
        if record.state == COMMITTING:
            return await self._commit_parts(record, [] if replies is None else replies)
        if record.state == RELEASING:
            return await self._release_parts(record)
        return record

    async def _reserve_parts(self, record: CartRecord, replies: list[dict[str, Any]]) -> CartRecord:
        engine = self._engine
        for i, part in enumerate(record.parts):
            request = ReserveRequest(
                record.reservation_id,
                record.customer_id,
                record.ttl_ms,
                record.fingerprint,
                record.lines_in(part),
                record.incarnation,
            )
            try:
                reply = await engine._reserve_part(engine.keys.partition(part.number), request)
            except EngineError as exc:
                return await self._back_out(record, (RESERVING,), ABORTED, exc)
            if reply["st"] != HELD:  # another driver backed this cart out, or its hold expired
                return await self._back_out(record, (RESERVING,), ABORTED, None)
            replies.append(reply)
            self._fault(f"reserve:part:{i}")
        life = record.ttl_ms + engine.settings.retention_seconds * 1000
        try:
            decided = await self._decide(
                record.parts, record.reservation_id, (RESERVING,), HELD, expiry_ms=life
            )
        except ReservationNotFound:  # refused and forgotten meanwhile: what we took goes back
            return await self._forgotten(record, None)
        self._fault("reserve:decided")
        return await self._follow(decided)

    async def _commit_parts(self, record: CartRecord, replies: list[dict[str, Any]]) -> CartRecord:
        engine = self._engine
        for i, part in enumerate(record.parts):
            try:
                reply = await engine._on_part(
                    "commit",
                    record.reservation_id,
                    part,
                    lambda p: calls.commit_call(
                        p,
                        record.reservation_id,
                        record.order_id,
                        engine.settings,
                        engine.clock_offset_ms,
                    ),
                )
            except EngineError as exc:
                # A part expired (or is gone): the cart cannot be bought whole.
                ends = (
                    EXPIRED
                    if isinstance(exc, ReservationExpired | ReservationNotFound)
                    else RELEASED
                )
                return await self._back_out(record, (COMMITTING,), ends, exc)
            replies.append(reply)
            self._fault(f"commit:part:{i}")
        decided = await self._decide(
            record.parts, record.reservation_id, (COMMITTING,), COMMITTED, expiry_ms=-1
        )
        self._fault("commit:decided")
        return await self._follow(decided)

    async def _release_parts(self, record: CartRecord) -> CartRecord:
        await self._release_each(record, forget=record.ends_as == ABORTED)
        retention = self._engine.settings.retention_seconds * 1000
        ends = record.ends_as or RELEASED
        try:
            decided = await self._decide(
                record.parts, record.reservation_id, (RELEASING,), ends, expiry_ms=retention
            )
        except ReservationNotFound:  # another driver finished the abort and forgot the record
            return replace(record, state=ABORTED, changed=False)
        self._fault("release:decided")
        return decided

    async def _back_out(
        self,
        record: CartRecord,
        leaving: tuple[str, ...],
        ends_as: str,
        refusal: EngineError | None,
    ) -> CartRecord:
        fields = {"to": ends_as, "why": _why(refusal)}
        try:
            decided = await self._decide(
                record.parts,
                record.reservation_id,
                leaving,
                RELEASING,
                transient=True,
                fields=fields,
            )
        except ReservationNotFound:
            return await self._forgotten(record, refusal)
        if decided.changed:
            self._fault("back-out:releasing")
        return await self._follow(decided)

    async def _forgotten(self, record: CartRecord, refusal: EngineError | None) -> CartRecord:
        """The record is gone (refused and forgotten by another driver, or past its life): give
        back whatever this driver may have taken since, and answer as aborted."""
        await self._release_each(record, forget=True)
        return replace(record, state=ABORTED, changed=False, refusal=_why(refusal))

    async def _release_each(self, record: CartRecord, *, forget: bool) -> None:
        for i, part in enumerate(record.parts):
            try:
                await self._engine._release_part(record.reservation_id, part, forget=forget)
            except ReservationNotFound:
                pass  # never reserved there: nothing to give back
            self._fault(f"release:part:{i}")

    async def _follow(self, record: CartRecord) -> CartRecord:
        """After a decision: finish a release this or another driver began; and when the record
        ended without this driver (another backed the cart out first), give back again what this
        one may have taken since (a release is idempotent)."""
        if record.state == RELEASING:
            return await self._release_parts(record)
        if not record.changed and record.state in (RELEASED, EXPIRED):
            await self._release_each(record, forget=False)
        return record

    # ---- Recovery --------------------------------------------------------------------------

    async def recover(self) -> int:
        """Finishes every record left transient past the recovery bound. Returns how many."""
        engine = self._engine
        finished = 0
        for home in engine.keys.all():
            keys, args = calls.cart_due_call(home, _RECOVERY_BATCH, engine.clock_offset_ms)
            due = await engine.scripts["cart"](keys=keys, args=args)
            for raw in due:
                rid = raw.decode() if isinstance(raw, bytes) else raw
                try:
                    call = calls.cart_get_call(home, rid, engine.clock_offset_ms)
                    record = CartRecord.of(await engine._run("cart", call))
                    if record.state in TRANSIENT:
                        log.info("finishing cart %s left %s", rid, record.state)
                        await self.drive(record)
                        finished += 1
                except EngineError as exc:  # e.g. the record expired meanwhile
                    log.info("cart %s: %s", rid, exc)
        return finished

    # ---- Plumbing ----------------------------------------------------------------------------

    async def answer(
        self,
        record: CartRecord,
        *,
        replayed: bool = False,
        replies: list[dict[str, Any]] | None = None,
    ) -> Reservation:
        """The reservation as its parts say now, under what the record allows: from `replies`
        when this call moved the record after every part answered it, else read afresh."""
        rid = record.reservation_id
        if record.changed and record.state in (HELD, COMMITTED) and replies:
            if len(replies) == len(record.parts):
                done: ReservationStatus = "held" if record.state == HELD else "committed"
                return replace(reservation_of(rid, replies), status=done)
        engine = self._engine
        read = await engine._read_parts(rid, record.parts)
        found = [r for r in read.values() if not r.get("missing")]
        if not found:
            raise ReservationNotFound(reservation_id=rid)
        now = max(int(r["now"]) for r in read.values())
        merged = reservation_of(rid, found, now)
        status = status_with_record(record.state, record.ends_as, merged.status)
        if status is None:
            raise ReservationNotFound(reservation_id=rid)
        return replace(merged, status=status, replayed=replayed)

    async def _decide(
        self,
        parts: tuple[ReservationPart, ...],
        rid: str,
        leaving: tuple[str, ...],
        state: str,
        *,
        transient: bool = False,
        expiry_ms: int = 0,
        fields: dict[str, str] | None = None,
        incarnation: str | None = None,
    ) -> CartRecord:
        engine = self._engine
        call = calls.cart_decide_call(
            engine.keys.partition(parts[0].number),
            rid,
            leaving,
            state,
            transient=transient,
            expiry_ms=expiry_ms,
            fields=fields or {},
            incarnation=incarnation,
            settings=engine.settings,
            clock_offset_ms=engine.clock_offset_ms,
        )
        return CartRecord.of(await engine._run("cart", call))

    def _state_error(self, record: CartRecord, *, expected: str) -> EngineError:
        """What an operation that needs `expected` answers for a record in another state."""
        rid = record.reservation_id
        if record.state in (RESERVING, ABORTED) or record.ends_as == ABORTED:
            return ReservationNotFound(reservation_id=rid)
        if record.refusal:  # backed out by a part's refusal: that refusal says it best
            return decode_refusal(record.refusal)
        status = {COMMITTING: HELD, RELEASING: record.ends_as or RELEASED}.get(
            record.state, record.state
        )
        return InvalidState(reservation_id=rid, status=status, expected=expected)

    def _fault(self, point: str) -> None:
        hook = self._engine.fault_hook
        if hook is not None:
            hook(point)


def _why(refusal: EngineError | None) -> str:
    """A refusal as the record keeps it ("" for none): the script reply it came from."""
    return "" if refusal is None else orjson.dumps(reply_of(refusal)).decode()


def decode_refusal(raw: str) -> EngineError:
    try:
        decode(raw)
    except EngineError as exc:
        return exc
    raise AssertionError(f"a cart's refusal is no refusal: {raw!r}")
