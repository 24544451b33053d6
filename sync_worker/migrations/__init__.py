"""Alembic migrations shipped inside the package, run from code (no alembic.ini needed).

    upgrade(database_url)     to the newest schema (`flashsale db upgrade`, `flashsale dev`)
    downgrade(database_url)   to an empty database, or to a named revision
    current(database_url)     the revision the database is at, or None

Any `postgresql://` spelling is accepted; SQLAlchemy gets `postgresql+psycopg://`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from sync_worker.db import sqlalchemy_url

HERE = Path(__file__).resolve().parent


def config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    # Passed as an attribute, not a main option: ConfigParser would read "%" in a password as
    # interpolation.
    cfg.attributes["database_url"] = sqlalchemy_url(database_url)
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(config(database_url), revision)


def current(database_url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
