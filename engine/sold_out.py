"""The sold-out fast path: refusals for a SKU this process just saw sold out, without Redis.

Most launch-day traffic arrives after the last unit went. When `reserve.lua` answers that a SKU has
no unit and no backorder room left anywhere, the engine trusts that for `recheck_ms` and refuses
carts naming the SKU locally. Once the window has passed, one call goes to Redis to recheck
while the others keep being refused for another window: a sold-out storm costs Redis one request
per window and process, not every request in flight. A unit that comes back through another
process (a release, an expiry, a restock) is offered again within two windows plus one round
trip: the recheck that finds it clears the mark. This process's own releases, expiries and stock
changes clear the mark at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from engine.errors import InsufficientStock
from engine.types import CartLine


class SoldOutMarks:
    def __init__(self, recheck_ms: int) -> None:
        self._window = recheck_ms / 1000
        self._until: dict[str, float] = {}
        # SKU -> the reservation id whose call rechecks it now: a caller that asks twice for the
        # same request (the API's early refusal, then reserve) must get the same answer.
        self._probe: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self._window > 0

    def mark(self, sku: str) -> None:
        if self._window > 0:
            self._until[sku] = time.monotonic() + self._window
            self._probe.pop(sku, None)

    def clear(self, skus: Iterable[str]) -> None:
        for sku in skus:
            self._until.pop(sku, None)
            self._probe.pop(sku, None)

    def clear_all(self) -> None:
        self._until.clear()
        self._probe.clear()

    def held(self, lines: Sequence[CartLine]) -> None:
        """A reserve of these lines succeeded: none of their SKUs is sold out any more."""
        if self._until:
            self.clear(line.sku for line in lines)

    def refusal(self, lines: Sequence[CartLine], request: str) -> InsufficientStock | None:
        """The refusal Redis would give this cart, if one of its SKUs is marked sold out.
        `request` names the call (its reservation id) that may be chosen to recheck."""
        if not self._until:
            return None
        now = time.monotonic()
        for line in lines:
            until = self._until.get(line.sku)
            if until is None or self._probe.get(line.sku) == request:
                continue
            if until <= now:
                # This call rechecks in Redis; the others are refused meanwhile, as before.
                self._until[line.sku] = now + self._window
                self._probe[line.sku] = request
                continue
            return InsufficientStock(
                sku=line.sku, location=line.location or "", requested=line.quantity, available=0
            )
        return None
