"""The webhook tables, as SQLAlchemy Core (migration 0002_webhooks creates them).

    webhook_endpoints   where to send which events, the signing secret(s), enabled or why not
    webhook_deliveries  the outbox: one row per (endpoint, ledger row) or test message, with its
                        status, attempts and last outcome; `message_id` is the `webhook-id`
    webhook_cursors     the last ledger id the dispatcher has turned into deliveries

The code reads and writes them with plain SQL; these definitions state the schema once, so a test
can compare them with what the migrations build.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
TZ = DateTime(timezone=True)
metadata = MetaData(naming_convention=NAMING)

endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Text, primary_key=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("events", ARRAY(Text), nullable=False),
    Column("secret", Text, nullable=False),
    # Still signed with after a rotation, until it expires: receivers switch without a gap.
    Column("previous_secret", Text),
    Column("previous_secret_expires_at", TZ),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("disabled_reason", Text),
    Column("disabled_at", TZ),
    Column("failing_since", TZ),  # first failure after the last success; NULL while healthy
    Column("created_at", TZ, nullable=False, server_default=func.now()),
    Column("updated_at", TZ, nullable=False, server_default=func.now()),
)

deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", Text, nullable=False),
    Column(
        "endpoint_id",
        Text,
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ledger_id", BigInteger),  # NULL for test messages
    Column("event_type", Text, nullable=False),
    Column("sku", Text),
    Column("payload", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", TZ, nullable=False, server_default=func.now()),
    Column("locked_until", TZ),  # a dispatcher is sending it; a crashed one's lease runs out
    Column("retry_until", TZ),  # set at the first failure: the retry horizon
    Column("last_attempt_at", TZ),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("last_latency_ms", Integer),
    Column("created_at", TZ, nullable=False, server_default=func.now()),
    Column("finished_at", TZ),
    UniqueConstraint("message_id"),
    CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_known"),
    Index("ix_webhook_deliveries_endpoint_id_status_id", "endpoint_id", "status", "id"),
    Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    # "Is an older delivery of this SKU still pending?", asked for every delivery claimed.
    Index(
        "ix_webhook_deliveries_pending_sku",
        "endpoint_id",
        "sku",
        "id",
        postgresql_where=text("status = 'pending'"),
    ),
)

cursors = Table(
    "webhook_cursors",
    metadata,
    Column("name", Text, primary_key=True),
    Column("ledger_id", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", TZ, nullable=False, server_default=func.now()),
)
