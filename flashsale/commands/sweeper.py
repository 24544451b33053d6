"""`flashsale sweeper [--interval S] [--once]`: reclaim expired holds lazy expiry missed."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale.commands.stock import with_engine
from flashsale.ui import console

if TYPE_CHECKING:
    from engine.engine import ReservationEngine


def sweeper(
    interval: Annotated[
        float | None, typer.Option(help="Seconds between sweeps (default: settings).")
    ] = None,
    once: Annotated[bool, typer.Option(help="Sweep once and exit.")] = False,
) -> None:
    """Reclaim every hold past its deadline, on every SKU, until SIGTERM/Ctrl-C.

    A Redis outage does not stop it: it retries with backoff (up to 5 s) and logs once when
    Redis goes away and once when it is back."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def work(engine: ReservationEngine) -> None:
        if once:
            console.print(f"reclaimed {await engine.sweep()} expired hold(s)")
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print("sweeper running; Ctrl-C to stop")
        await engine.run_sweeper(stop, interval)

    with_engine(work)
