"""The schema: migrations go up, down and up again; the database itself guards the ledger."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine
from typer.testing import CliRunner

from flashsale.cli import app
from sync_worker import migrations
from sync_worker.db import libpq_url, sqlalchemy_url
from sync_worker.models import Base
from webhooks.schema import metadata as webhook_metadata

TABLES = {
    "skus",
    "locations",
    "inventory_levels",
    "inventory_transactions",
    "reservations",
    "reservation_lines",
    "sync_partitions",
    "sync_dead_letters",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_cursors",
}
HEAD = "0004_sync_partitions"
LEDGER_ROW = """
INSERT INTO inventory_transactions (partition, stream_id, type, sku, location, d_on_hand,
    d_reserved, d_committed, on_hand, reserved, committed, available, backordered, occurred_at)
VALUES (0, '1-0', 'restocked', 's', 'w', 5, 0, 0, 5, 0, 0, 5, 0, now())
"""


def tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows.fetchall()}


def test_migrations_upgrade_downgrade_and_upgrade_again(pg_database_url: str) -> None:
    migrations.upgrade(pg_database_url)
    assert tables(pg_database_url) == TABLES | {"alembic_version"}
    engine = create_engine(sqlalchemy_url(pg_database_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, _all_tables()) == []  # models == migrations
    engine.dispose()

    migrations.downgrade(pg_database_url)
    assert tables(pg_database_url) == {"alembic_version"}
    assert migrations.current(pg_database_url) is None

    migrations.upgrade(pg_database_url)
    assert tables(pg_database_url) == TABLES | {"alembic_version"}
    assert migrations.current(pg_database_url) == HEAD


def _all_tables() -> MetaData:
    combined = MetaData()
    for metadata in (Base.metadata, webhook_metadata):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE inventory_transactions SET d_on_hand = 500",
        "DELETE FROM inventory_transactions",
        "TRUNCATE inventory_transactions",
    ],
)
def test_the_ledger_refuses_to_change_history(pg_database_url: str, statement: str) -> None:
    migrations.upgrade(pg_database_url)
    with psycopg.connect(libpq_url(pg_database_url), autocommit=True) as conn:
        conn.execute(LEDGER_ROW)
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute(statement)
        row = conn.execute("SELECT count(*), sum(d_on_hand) FROM inventory_transactions")
        assert row.fetchone() == (1, 5)


def test_the_ledger_refuses_a_second_row_for_one_stream_entry(pg_database_url: str) -> None:
    migrations.upgrade(pg_database_url)
    with psycopg.connect(libpq_url(pg_database_url), autocommit=True) as conn:
        conn.execute(LEDGER_ROW)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(LEDGER_ROW)


@pytest.mark.parametrize("column", ["on_hand", "reserved", "committed"])
def test_levels_never_go_negative(pg_database_url: str, column: str) -> None:
    migrations.upgrade(pg_database_url)
    with psycopg.connect(libpq_url(pg_database_url), autocommit=True) as conn:
        conn.execute("INSERT INTO skus (sku, partition) VALUES ('s', 0)")
        conn.execute("INSERT INTO locations (location) VALUES ('w')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                f"INSERT INTO inventory_levels (sku, location, {column}) VALUES ('s', 'w', -1)"
            )
        conn.execute(
            "INSERT INTO inventory_levels (sku, location, on_hand, reserved, committed, "
            "safety_stock) VALUES ('s', 'w', 10, 3, 2, 1)"
        )
        available = conn.execute("SELECT available FROM inventory_levels").fetchone()
        assert available == (4,)  # on_hand - reserved - committed - safety_stock


def test_every_postgres_url_spelling_reaches_sqlalchemy_as_psycopg() -> None:
    for url in ("postgresql://u@h/d", "postgres://u@h/d", "postgresql+psycopg://u@h/d"):
        assert sqlalchemy_url(url) == "postgresql+psycopg://u@h/d"
        assert libpq_url(sqlalchemy_url(url)) == "postgresql://u@h/d"
    with pytest.raises(ValueError):
        sqlalchemy_url("mysql://u@h/d")


def test_db_commands_migrate_up_and_down(pg_database_url: str, redis_url: str) -> None:
    runner = CliRunner()
    env = {"FLASHSALE_DATABASE_URL": pg_database_url, "FLASHSALE_REDIS_URL": redis_url}
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert HEAD in runner.invoke(app, ["db", "current"], env=env).output
    refused = runner.invoke(app, ["db", "downgrade"], env=env, input="n\n")
    assert refused.exit_code != 0 and tables(pg_database_url) >= TABLES
    result = runner.invoke(app, ["db", "downgrade", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert tables(pg_database_url) == {"alembic_version"}
