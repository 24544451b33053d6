"""`flashsale stock`, registered by flashsale/cli.py:

    flashsale stock show SKU                           quantities per location
    flashsale stock restock|adjust SKU LOCATION N      on_hand changes with a reason
    flashsale stock set SKU LOCATION N [--from M]      absolute on_hand (optimistic check)

Heavy imports stay inside the commands: `flashsale --help` imports this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flashsale.ui import console, fail, settings_or_exit

if TYPE_CHECKING:
    from engine.engine import ReservationEngine

stock_app = typer.Typer(help="Administer stock levels of a SKU.", no_args_is_help=True)


def with_engine(work: Callable[[ReservationEngine], Awaitable[Any]]) -> Any:
    """Run `work` on an engine over the configured Redis (the embedded one when unset)."""
    from engine.engine import ReservationEngine
    from engine.errors import EngineError
    from flashsale.embedded import ensure_services

    settings = settings_or_exit()
    redis_url, _ = ensure_services(settings)
    settings = settings.model_copy(update={"redis_url": redis_url})

    async def run() -> Any:
        engine = ReservationEngine.from_settings(settings)
        await engine.start()
        try:
            return await work(engine)
        finally:
            await engine.aclose()

    try:
        return asyncio.run(run())
    except EngineError as exc:
        fail(str(exc))  # the sentence the API's problem detail says


@stock_app.command("show")
def show(sku: str) -> None:
    """Print a SKU's quantities per location and in total."""
    from rich.table import Table

    snap = with_engine(lambda engine: engine.inventory(sku))
    table = Table("location", "on_hand", "available", "reserved", "committed", "safety_stock")
    for lvl in (*snap.locations, snap.total):
        quantities = (lvl.on_hand, lvl.available, lvl.reserved, lvl.committed, lvl.safety_stock)
        table.add_row(lvl.location, *map(str, quantities))
    console.print(table)


Reason = Annotated[str, typer.Option(help="received, restock, correction, cycle_count, ...")]
Reference = Annotated[str, typer.Option(help="A reference URI, e.g. gid://po/123.")]


@stock_app.command("restock")
def restock(
    sku: str, location: str, quantity: int, reason: Reason = "restock", reference: Reference = ""
) -> None:
    """Add QUANTITY units to on_hand at LOCATION."""
    lvl = with_engine(
        lambda e: e.restock(sku, location, quantity, reason=reason, reference=reference)
    )
    console.print(f"{sku}@{location}: on_hand={lvl.on_hand} available={lvl.available}")


# "-1" looks like an option to click; taken as the argument instead, and --reason may follow it.
@stock_app.command("adjust", context_settings={"ignore_unknown_options": True})
def adjust(
    sku: str, location: str, delta: int, reason: Reason = "correction", reference: Reference = ""
) -> None:
    """Change on_hand at LOCATION by DELTA (negative for damage, shrinkage, ...)."""
    lvl = with_engine(lambda e: e.adjust(sku, location, delta, reason=reason, reference=reference))
    console.print(f"{sku}@{location}: on_hand={lvl.on_hand} available={lvl.available}")


@stock_app.command("set")
def set_on_hand(
    sku: str,
    location: str,
    on_hand: int,
    change_from: Annotated[
        int | None, typer.Option("--from", help="Refuse unless on_hand is this now.")
    ] = None,
    reason: Reason = "cycle_count",
    reference: Reference = "",
) -> None:
    """Set on_hand at LOCATION to ON_HAND."""
    lvl = with_engine(
        lambda e: e.set_on_hand(
            sku,
            location,
            on_hand,
            reason=reason,
            reference=reference,
            change_from_quantity=change_from,
        )
    )
    console.print(f"{sku}@{location}: on_hand={lvl.on_hand} available={lvl.available}")
