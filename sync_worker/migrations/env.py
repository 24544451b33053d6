"""Alembic environment: online migrations on the URL `sync_worker.migrations.config` passes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from sync_worker.models import Base

# Two processes upgrading at once (two `flashsale dev`, a deploy racing a worker) would both try
# to create the tables; this lock makes the second wait and then find nothing to do.
MIGRATION_LOCK = 7_274_663_001


def run_migrations_online() -> None:
    url = context.config.attributes["database_url"]
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
            try:
                context.configure(connection=connection, target_metadata=Base.metadata)
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported: run against a database")
run_migrations_online()
