"""Reservation lines lose their foreign key to reservations.

The sync worker writes a reservation and its lines in one transaction from one rebuild, and
nothing else writes either table, so the key only ever checked what the writer guarantees. It
cost a lookup per line written: about a fifth of Postgres' time per synced event.

Revision ID: 0003_lines_without_fk
Revises: 0002_webhooks
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003_lines_without_fk"
down_revision = "0002_webhooks"
branch_labels = None
depends_on = None

FK = "fk_reservation_lines_reservation_id_reservations"


def upgrade() -> None:
    op.drop_constraint(FK, "reservation_lines", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        FK,
        "reservation_lines",
        "reservations",
        ["reservation_id", "partition"],
        ["reservation_id", "partition"],
        ondelete="CASCADE",
    )
