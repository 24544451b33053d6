"""What every subcommand shares: the console, one-line failures, settings from the environment.

Other modules' subcommands use these too, so a bad setting reads the same everywhere.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from engine.errors import ConfigurationError
from flashsale.settings import Settings, load

EXIT_FAILURE = 1
EXIT_CONFIG = 2  # as click's usage errors: the invocation, not the work, is wrong

console = Console(highlight=False)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    # typer.echo, not rich: rich wraps at the terminal width, and the contract is one line.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load(**overrides)
    except ConfigurationError as exc:
        fail(str(exc), EXIT_CONFIG)
