"""What every subcommand shares: the console, one-line failures, settings from the environment.

Other modules' subcommands use these too, so a bad setting reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.console import Console

from engine.config import masked
from engine.errors import ConfigurationError
from flashsale.settings import Settings, load

EXIT_FAILURE = 1
EXIT_CONFIG = 2  # as click's usage errors: the invocation, not the work, is wrong

console = Console(highlight=False)
# Notes beside the output (servers started, what stays running): stdout stays the command's answer.
notes = Console(stderr=True, highlight=False)

# The servers this process talks to ("Redis"/"Postgres" -> URL), recorded where the URLs are
# settled, so a failure to reach one can name it.
servers_in_use: dict[str, str] = {}


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    # typer.echo, not rich: rich wraps at the terminal width, and the contract is one line.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load(**overrides)
    except ConfigurationError as exc:
        fail(str(exc), EXIT_CONFIG)


def unreachable_message(exc: BaseException) -> str | None:
    """One line naming the server `exc` says could not be reached, or None if it says not that."""
    import psycopg
    import redis.exceptions

    for error in _causes(exc):
        if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return _cannot_reach("Redis", "FLASHSALE_REDIS_URL", error)
        if isinstance(error, psycopg.OperationalError):
            return _cannot_reach("Postgres", "FLASHSALE_DATABASE_URL", error)
    return None


def _cannot_reach(name: str, variable: str, error: BaseException) -> str:
    url = servers_in_use.get(name)
    where = f"{name} at {masked(url)}" if url else f"{name} ({variable})"
    lines = str(error).strip().splitlines()  # libpq adds a hint line: the first says what failed
    reason = lines[0].strip() if lines else type(error).__name__
    return f"cannot reach {where}: {reason}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what it was raised from, and the members of exception groups, depth first."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        if isinstance(error, BaseExceptionGroup):
            pending.extend(reversed(error.exceptions))
        for linked in (error.__context__, error.__cause__):
            if linked is not None:
                pending.append(linked)
