"""The one module that builds Redis key names.

Every key of one SKU carries its partition's hash tag `{p<N>}`, so a script can declare them all
in KEYS and they share one Redis Cluster slot. N = crc32(sku) % partitions, or crc32(group) %
partitions for a SKU in a placement group (every SKU of one sale in one partition). Reservation
keys carry the tag of the partition whose SKUs they hold: a cart spanning partitions has one
reservation key per partition, all with the same reservation id.

    {p<N>}:events            stream: every state change of the partition (the sync worker reads it)
    {p<N>}:skus              set: the SKUs living in the partition (sweeper, reconcile)
    {p<N>}:sku:<sku>         hash: SKU config (`cfg`, JSON) and per-location quantities
                             (`oh:<loc>` on_hand, `rs:` reserved, `cm:` committed,
                             `ss:` safety_stock, `bl:` backorder_limit, `in:` incoming)
    {p<N>}:holds:<sku>       sorted set: active holds, score = deadline in ms,
                             member = "<reservation_id>|<customer_id>|<loc>=<qty>;..."
    {p<N>}:cust:<sku>        hash: per customer `u:<id>` units held + committed, `h:<id>` holds
    {p<N>}:res:<id>          hash: one reservation's part in this partition
    {p<N>}:op:<key>          string: answer of an idempotent stock operation (retention TTL)
    {p<N>}:cart:<id>         hash: decision record of a cart spanning partitions, in its home
                             partition (the lowest-numbered partition it spans)
    {p<N>}:carts             sorted set: carts of this home partition in a transient state,
                             score = when the sweeper may finish them (ms)
    {p<N>}:verified          string: run_id of the Redis server the partition was verified on
                             (no script writes on another server: engine.fencing)
    {p<N>}:fenced            string: why the partition is fenced (JSON), while it is
    placement:<sku>          string: the SKU's placement group ("" for none), written once when
                             the SKU is created; no hash tag, it is read before the partition
                             is known (engine.placement)
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_TAG = re.compile(r"^\{p(\d+)\}")


def partition_of(sku: str, partitions: int) -> int:
    return zlib.crc32(sku.encode()) % partitions


def partition_of_key(key: str) -> int:
    """The partition number in a key's `{p<N>}` hash tag."""
    match = _TAG.match(key)
    if match is None:
        raise ValueError(f"key {key!r} carries no partition tag")
    return int(match.group(1))


@dataclass(frozen=True, slots=True)
class Partition:
    """Key builder for one partition."""

    number: int

    @property
    def tag(self) -> str:
        return f"{{p{self.number}}}"

    @property
    def events(self) -> str:
        return f"{self.tag}:events"

    @property
    def skus(self) -> str:
        return f"{self.tag}:skus"

    def sku(self, sku: str) -> str:
        return f"{self.tag}:sku:{sku}"

    def holds(self, sku: str) -> str:
        return f"{self.tag}:holds:{sku}"

    def customers(self, sku: str) -> str:
        return f"{self.tag}:cust:{sku}"

    def sku_keys(self, sku: str) -> tuple[str, str, str]:
        """The three keys every script that touches a SKU declares, in this order."""
        return (self.sku(sku), self.holds(sku), self.customers(sku))

    def reservation(self, reservation_id: str) -> str:
        return f"{self.tag}:res:{reservation_id}"

    def operation(self, idempotency_key: str) -> str:
        return f"{self.tag}:op:{idempotency_key}"

    def cart(self, reservation_id: str) -> str:
        return f"{self.tag}:cart:{reservation_id}"

    @property
    def carts(self) -> str:
        return f"{self.tag}:carts"

    @property
    def verified(self) -> str:
        return f"{self.tag}:verified"

    @property
    def fenced(self) -> str:
        return f"{self.tag}:fenced"


class KeySchema:
    """Maps SKUs to partitions; the engine's only way to name a key."""

    def __init__(self, partitions: int = 1) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self._parts = tuple(Partition(n) for n in range(partitions))

    def partition(self, number: int) -> Partition:
        return self._parts[number]

    def for_sku(self, sku: str) -> Partition:
        """The partition of a SKU without a placement group."""
        return self._parts[partition_of(sku, self.partitions)]

    def placed(self, sku: str, group: str | None) -> Partition:
        """The partition of a SKU in `group` (None or "": no group, the SKU's own)."""
        return self._parts[partition_of(group or sku, self.partitions)]

    def all(self) -> tuple[Partition, ...]:
        return self._parts


def placement(sku: str) -> str:
    """`placement:<sku>`: the SKU's placement group, "" for none (engine.placement)."""
    return f"placement:{sku}"


def rate_limit(scope: str, subject: str, window: int) -> str:
    """`rl:<scope>:<subject>:<window>`: the API's request counter for one fixed window.

    One key per window number, so a new window starts at zero without a reset; the counter
    expires shortly after its window ends. Single-key, so any Cluster slot will do.
    """
    return f"rl:{scope}:{subject}:{window}"
