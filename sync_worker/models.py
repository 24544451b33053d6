"""The Postgres schema (SQLAlchemy 2.0 models). The migrations in `migrations/versions` create it.

    skus                    one row per SKU: its partition and latest configuration
    locations               every location name seen
    inventory_levels        per SKU and location: the quantities, as of the latest event
    inventory_transactions  the ledger: one row per stream event, append-only (a trigger refuses
                            UPDATE, DELETE and TRUNCATE)
    reservations            one row per reservation part (one per partition it spans)
    reservation_lines       its allocations: line, location, quantity, backordered, fulfilled
                            (no foreign key: the worker writes a reservation and its lines
                            together, and the check cost a lookup per line)
    sync_dead_letters       stream entries that can never be written, kept for an operator

`last_ms`/`last_seq` (and `config_ms`/`config_seq`) hold the stream id of the event a row was
last set from. Workers may commit batches of one partition out of stream order; a row only moves
forward in stream order, so the newest event wins whatever order batches commit in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
STATUSES = ("held", "committed", "fulfilled", "released", "expired")

Qty = BigInteger  # Lua numbers reach 1e15; int4 would turn a big restock into a poison event
TZ = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _zero() -> Any:
    return mapped_column(Qty, nullable=False, server_default=text("0"))


class Sku(Base):
    __tablename__ = "skus"

    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    # The engine's configure_sku payload (what `sku_configured` carries); NULL until it is synced.
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    config_ms: Mapped[int] = _zero()
    config_seq: Mapped[int] = _zero()
    configured_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class Location(Base):
    __tablename__ = "locations"

    location: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class InventoryLevel(Base):
    __tablename__ = "inventory_levels"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_nonnegative"),
        CheckConstraint("reserved >= 0", name="reserved_nonnegative"),
        CheckConstraint("committed >= 0", name="committed_nonnegative"),
        CheckConstraint("safety_stock >= 0", name="safety_stock_nonnegative"),
        CheckConstraint("backorder_limit >= 0", name="backorder_limit_nonnegative"),
        CheckConstraint("incoming >= 0", name="incoming_nonnegative"),
    )

    sku: Mapped[str] = mapped_column(Text, ForeignKey("skus.sku"), primary_key=True)
    location: Mapped[str] = mapped_column(Text, ForeignKey("locations.location"), primary_key=True)
    on_hand: Mapped[int] = _zero()
    reserved: Mapped[int] = _zero()
    committed: Mapped[int] = _zero()
    safety_stock: Mapped[int] = _zero()
    backorder_limit: Mapped[int] = _zero()
    incoming: Mapped[int] = _zero()
    available: Mapped[int] = mapped_column(
        Qty, Computed("on_hand - reserved - committed - safety_stock", persisted=True)
    )
    last_ms: Mapped[int] = _zero()
    last_seq: Mapped[int] = _zero()
    updated_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class InventoryTransaction(Base):
    __tablename__ = "inventory_transactions"
    __table_args__ = (
        UniqueConstraint("partition", "stream_id"),
        Index("ix_inventory_transactions_sku_id", "sku", "id"),
        Index(
            "ix_inventory_transactions_reservation_id",
            "reservation_id",
            postgresql_where=text("reservation_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    stream_id: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    sku: Mapped[str] = mapped_column(Text, nullable=False)
    location: Mapped[str] = mapped_column(Text, nullable=False)  # "" for SKU-level events
    d_on_hand: Mapped[int] = mapped_column(Qty, nullable=False)
    d_reserved: Mapped[int] = mapped_column(Qty, nullable=False)
    d_committed: Mapped[int] = mapped_column(Qty, nullable=False)
    on_hand: Mapped[int] = mapped_column(Qty, nullable=False)
    reserved: Mapped[int] = mapped_column(Qty, nullable=False)
    committed: Mapped[int] = mapped_column(Qty, nullable=False)
    available: Mapped[int] = mapped_column(Qty, nullable=False)
    reservation_id: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    backordered: Mapped[int] = mapped_column(Qty, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(TZ)
    data: Mapped[Any | None] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in STATUSES)), name="status_known"
        ),
        Index("ix_reservations_status", "status"),
        Index("ix_reservations_customer_id", "customer_id"),
    )

    reservation_id: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    order_id: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    extensions: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    fingerprint: Mapped[str | None] = mapped_column(Text)
    # fulfilment id -> [[sku, quantity, location], ...] it shipped (restore keeps retries safe)
    fulfilments: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class ReservationLine(Base):
    __tablename__ = "reservation_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("fulfilled >= 0 AND fulfilled <= quantity", name="fulfilled_in_range"),
    )

    reservation_id: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based, request order
    location: Mapped[str] = mapped_column(Text, primary_key=True)
    # 1-based order of the allocation within its line: the order the scripts ship and list them
    alloc_no: Mapped[int] = mapped_column(Integer, nullable=False)
    sku: Mapped[str] = mapped_column(Text, nullable=False)
    quantity: Mapped[int] = mapped_column(Qty, nullable=False)
    backordered: Mapped[int] = _zero()
    fulfilled: Mapped[int] = _zero()
    # A held reservation's hold on this SKU was reclaimed by expiry while other SKUs of the same
    # reservation may still be held (lazy expiry reclaims one SKU at a time).
    hold_expired: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )


class DeadLetter(Base):
    __tablename__ = "sync_dead_letters"
    __table_args__ = (UniqueConstraint("partition", "stream_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    stream_id: Mapped[str] = mapped_column(Text, nullable=False)
    fields: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # None: gone from the stream
    error: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class SyncPartition(Base):
    """Per partition: the newest stream entry Postgres holds (the partition's sequence), and the
    Redis server process whose events may be written (the one verified not to be behind).

    The worker writes a batch only while `verified_run` names the server it read the batch from,
    and raises `high_*` in the same transaction; the check after a restart or failover locks the
    row, so a batch read from the old server is either counted before it or refused after."""

    __tablename__ = "sync_partitions"

    partition: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    high_ms: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    high_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    verified_run: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[datetime | None] = mapped_column(TZ)
    fenced_at: Mapped[datetime | None] = mapped_column(TZ)
    # What the check found: Postgres' newest stream id against the one Redis had reached.
    fenced_reason: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
