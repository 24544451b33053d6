"""Initial schema: SKUs, locations, levels, the append-only ledger, reservations, dead letters.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Q = sa.BigInteger()
TZ = sa.DateTime(timezone=True)
ZERO = sa.text("0")
NOW = sa.text("now()")

# The database itself keeps the ledger append-only: no role, script or ORM can rewrite history.
APPEND_ONLY = """
CREATE FUNCTION inventory_transactions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'inventory_transactions is append-only: % refused', TG_OP
    USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER inventory_transactions_no_update_delete
  BEFORE UPDATE OR DELETE ON inventory_transactions
  FOR EACH ROW EXECUTE FUNCTION inventory_transactions_append_only();
CREATE TRIGGER inventory_transactions_no_truncate
  BEFORE TRUNCATE ON inventory_transactions
  FOR EACH STATEMENT EXECUTE FUNCTION inventory_transactions_append_only();
"""


def _qty(name: str) -> sa.Column:
    return sa.Column(name, Q, nullable=False, server_default=ZERO)


def upgrade() -> None:
    op.create_table(
        "skus",
        sa.Column("sku", sa.Text(), primary_key=True),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("config", postgresql.JSONB()),
        _qty("config_ms"),
        _qty("config_seq"),
        sa.Column("configured_at", TZ),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("sku", name="pk_skus"),
    )
    op.create_table(
        "locations",
        sa.Column("location", sa.Text(), primary_key=True),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("location", name="pk_locations"),
    )
    op.create_table(
        "inventory_levels",
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        *(_qty(n) for n in ("on_hand", "reserved", "committed", "safety_stock")),
        *(_qty(n) for n in ("backorder_limit", "incoming")),
        sa.Column(
            "available", Q, sa.Computed("on_hand - reserved - committed - safety_stock", True)
        ),
        _qty("last_ms"),
        _qty("last_seq"),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("sku", "location", name="pk_inventory_levels"),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name="fk_inventory_levels_sku_skus"),
        sa.ForeignKeyConstraint(
            ["location"], ["locations.location"], name="fk_inventory_levels_location_locations"
        ),
        *(
            sa.CheckConstraint(f"{n} >= 0", name=op.f(f"ck_inventory_levels_{n}_nonnegative"))
            for n in (
                "on_hand",
                "reserved",
                "committed",
                "safety_stock",
                "backorder_limit",
                "incoming",
            )
        ),
    )
    op.create_table(
        "inventory_transactions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        *(sa.Column(n, Q, nullable=False) for n in ("d_on_hand", "d_reserved", "d_committed")),
        *(sa.Column(n, Q, nullable=False) for n in ("on_hand", "reserved", "committed")),
        sa.Column("available", Q, nullable=False),
        *(sa.Column(n, sa.Text()) for n in ("reservation_id", "order_id", "customer_id")),
        *(sa.Column(n, sa.Text()) for n in ("reason", "reference")),
        sa.Column("backordered", Q, nullable=False),
        sa.Column("expires_at", TZ),
        sa.Column("data", postgresql.JSONB()),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_inventory_transactions"),
        sa.UniqueConstraint(
            "partition", "stream_id", name="uq_inventory_transactions_partition_stream_id"
        ),
    )
    op.create_index("ix_inventory_transactions_sku_id", "inventory_transactions", ["sku", "id"])
    op.create_index(
        "ix_inventory_transactions_reservation_id",
        "inventory_transactions",
        ["reservation_id"],
        postgresql_where=sa.text("reservation_id IS NOT NULL"),
    )
    op.execute(APPEND_ONLY)
    statuses = "'held', 'committed', 'fulfilled', 'released', 'expired'"
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text()),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("extensions", sa.Integer(), nullable=False, server_default=ZERO),
        sa.Column("fingerprint", sa.Text()),
        sa.Column(
            "fulfilments",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("reservation_id", "partition", name="pk_reservations"),
        sa.CheckConstraint(f"status IN ({statuses})", name=op.f("ck_reservations_status_known")),
    )
    op.create_index("ix_reservations_status", "reservations", ["status"])
    op.create_index("ix_reservations_customer_id", "reservations", ["customer_id"])
    op.create_table(
        "reservation_lines",
        sa.Column("reservation_id", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("alloc_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("quantity", Q, nullable=False),
        _qty("backordered"),
        _qty("fulfilled"),
        sa.Column("hold_expired", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.PrimaryKeyConstraint(
            "reservation_id", "partition", "line_no", "location", name="pk_reservation_lines"
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id", "partition"],
            ["reservations.reservation_id", "reservations.partition"],
            name="fk_reservation_lines_reservation_id_reservations",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservation_lines_quantity_positive")),
        sa.CheckConstraint(
            "fulfilled >= 0 AND fulfilled <= quantity",
            name=op.f("ck_reservation_lines_fulfilled_in_range"),
        ),
    )
    op.create_table(
        "sync_dead_letters",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("fields", postgresql.JSONB()),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_sync_dead_letters"),
        sa.UniqueConstraint(
            "partition", "stream_id", name="uq_sync_dead_letters_partition_stream_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("sync_dead_letters")
    op.drop_table("reservation_lines")
    op.drop_table("reservations")
    op.drop_table("inventory_transactions")
    op.execute("DROP FUNCTION inventory_transactions_append_only()")
    op.drop_table("inventory_levels")
    op.drop_table("locations")
    op.drop_table("skus")
