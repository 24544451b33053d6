"""Database URLs and connections: one spelling in, the right one for each library out."""

from __future__ import annotations

from typing import Any

import psycopg

CONNECT_TIMEOUT_S = 5


def sqlalchemy_url(url: str) -> str:
    """`postgresql+psycopg://…`: bare `postgresql://` would make SQLAlchemy look for psycopg2."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"expected a postgresql:// URL, got {scheme}://")


def libpq_url(url: str) -> str:
    """The URL psycopg (libpq) accepts: SQLAlchemy's driver suffix removed."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


async def connect(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        libpq_url(url), connect_timeout=CONNECT_TIMEOUT_S, application_name="flashsale-sync"
    )


def ms(expr: str) -> str:
    """SQL turning epoch milliseconds into a timestamptz, exactly (no float seconds)."""
    return f"('epoch'::timestamptz + ({expr}) * interval '1 millisecond')"


def epoch_ms(column: str) -> str:
    """SQL turning a timestamptz back into epoch milliseconds."""
    return f"round(extract(epoch from {column}) * 1000)::bigint"


def columns(values: list[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    """Rows → one list per column: the shape `SELECT * FROM unnest(%s::t[], ...)` takes."""
    return tuple([v[i] for v in values] for i in range(width))
