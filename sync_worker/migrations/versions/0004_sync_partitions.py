"""Per-partition sequence and fence state: `sync_partitions`.

Filled from the ledger: each partition's newest stream id is the highest Postgres holds.

Revision ID: 0004_sync_partitions
Revises: 0003_lines_without_fk
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_sync_partitions"
down_revision = "0003_lines_without_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_partitions",
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("high_ms", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("high_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("verified_run", sa.Text(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fenced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fenced_reason", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("partition", name=op.f("pk_sync_partitions")),
    )
    op.execute(
        """
        INSERT INTO sync_partitions (partition, high_ms, high_seq)
        SELECT DISTINCT ON (partition) partition, split_part(stream_id, '-', 1)::bigint,
            split_part(stream_id, '-', 2)::bigint
        FROM inventory_transactions
        ORDER BY partition, split_part(stream_id, '-', 1)::bigint DESC,
            split_part(stream_id, '-', 2)::bigint DESC
        """
    )


def downgrade() -> None:
    op.drop_table("sync_partitions")
