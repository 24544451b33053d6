"""`flashsale sku`: create a SKU, show one, list them all (straight on Redis, like `stock`).

    flashsale sku create SKU --location wh-1=100 [--location wh-2=40 --backorder-limit wh-2=10]
                         [--placement-group SALE]
    flashsale sku show SKU [--json]
    flashsale sku list [--sold-out | --in-stock] [--low-stock] [--limit N] [--json]

Heavy imports stay inside the commands: `flashsale --help` imports this module.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale.commands.stock import with_engine
from flashsale.ui import console, fail

if TYPE_CHECKING:
    from api.schemas.skus import SkuDetailOut
    from engine.engine import ReservationEngine

app = typer.Typer(help="Create, show and list SKUs.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON (the API's shape) instead.")]


def _pairs(values: list[str], option: str) -> dict[str, int]:
    pairs: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not name or not number.isdigit():
            fail(f"{option} {value!r}: expected NAME=N with N a whole number >= 0", 2)
        if name in pairs:
            fail(f"{option} {name}: given twice", 2)
        pairs[name] = int(number)
    return pairs


@app.command("create")
def create(
    sku: str,
    location: Annotated[
        list[str],
        typer.Option(help="NAME=ON_HAND, once per location, in priority order (at least one)."),
    ],
    backorder_limit: Annotated[
        list[str] | None, typer.Option(help="NAME=N: units LOCATION may sell below zero.")
    ] = None,
    purchase_limit: Annotated[int, typer.Option(min=0, help="Per customer; 0 = none.")] = 0,
    low_stock_threshold: Annotated[int, typer.Option(min=0)] = 0,
    backorder_lead_days: Annotated[int, typer.Option(min=0)] = 0,
    max_holds_per_customer: Annotated[int, typer.Option(min=0, help="0 = no cap.")] = 0,
    max_extensions: Annotated[int, typer.Option(min=0)] = 0,
    placement_group: Annotated[
        str | None,
        typer.Option(
            help="The sale or drop SKU belongs to: every SKU of one group lives in one "
            "partition, so a cart within it is atomic on a Redis Cluster. Fixed once created."
        ),
    ] = None,
) -> None:
    """Create SKU with its locations; refused if it exists (change stock with `stock`)."""
    from engine.types import LocationConfig, SkuConfig

    on_hand = _pairs(location, "--location")
    limits = _pairs(backorder_limit or [], "--backorder-limit")
    unknown = sorted(set(limits) - set(on_hand))
    if unknown:
        fail(f"--backorder-limit names no --location: {', '.join(unknown)}", 2)
    config = SkuConfig(
        locations=tuple(
            LocationConfig(name, on_hand=n, backorder_limit=limits.get(name, 0))
            for name, n in on_hand.items()
        ),
        purchase_limit=purchase_limit,
        low_stock_threshold=low_stock_threshold,
        backorder_lead_days=backorder_lead_days,
        max_active_holds_per_customer=max_holds_per_customer,
        max_extensions=max_extensions,
        placement_group=placement_group,
    )

    async def work(engine: ReservationEngine) -> bool:
        if await engine.sku_config(sku) is not None:
            return False
        return await engine.configure_sku(sku, config, reason="received")

    if not with_engine(work):
        fail(f"SKU {sku} exists already (see `flashsale sku show {sku}`)")
    group = f" (placement group {placement_group})" if placement_group else ""
    console.print(f"created {sku}{group}: " + ", ".join(f"{k}={v}" for k, v in on_hand.items()))


@app.command("show")
def show(sku: str, as_json: Json = False) -> None:
    """Print SKU's configuration and its quantities per location and in total."""
    from rich.table import Table

    async def work(engine: ReservationEngine) -> SkuDetailOut:
        from api.routes.skus import sku_detail

        return sku_detail(await engine.inventory(sku))

    detail: SkuDetailOut = with_engine(work)
    if as_json:
        typer.echo(detail.model_dump_json(indent=2))
        return
    config = detail.config.model_dump(exclude={"sku", "locations"})
    for name, value in config.items():
        console.print(f"{name:30} {'-' if value is None else value}")
    table = Table("location", "on_hand", "available", "reserved", "committed", "backorder_limit")
    for lvl in (*detail.inventory.locations, detail.inventory.total):
        table.add_row(
            lvl.location,
            *map(
                str, (lvl.on_hand, lvl.available, lvl.reserved, lvl.committed, lvl.backorder_limit)
            ),
        )
    console.print(table)


@app.command("list")
def list_skus(
    sold_out: Annotated[
        bool | None,
        typer.Option("--sold-out/--in-stock", help="Only SKUs with nothing left to sell / others."),
    ] = None,
    low_stock: Annotated[
        bool, typer.Option("--low-stock", help="Only SKUs at or below their threshold.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Stop after this many SKUs.")] = 1000,
    as_json: Json = False,
) -> None:
    """List every SKU with its totals (partition order, then by name)."""
    from rich.table import Table

    async def work(engine: ReservationEngine) -> list[SkuDetailOut]:
        from api.routes.skus import sku_detail
        from engine import catalog

        found: list[SkuDetailOut] = []
        cursor = None
        while len(found) < limit:
            names, cursor = await catalog.list_skus(engine, cursor, 200)
            for snapshot in await catalog.snapshots(engine, names):
                detail = sku_detail(snapshot)
                if sold_out is not None and detail.sold_out != sold_out:
                    continue
                if low_stock and not detail.low_stock:
                    continue
                found.append(detail)
            if cursor is None:
                break
        return found[:limit]

    found: list[SkuDetailOut] = with_engine(work)
    if as_json:
        typer.echo(json.dumps([item.model_dump(mode="json") for item in found], indent=2))
        return
    table = Table("sku", "on_hand", "available", "reserved", "committed", "state")
    for item in found:
        total = item.inventory.total
        state = "sold out" if item.sold_out else "low stock" if item.low_stock else ""
        if item.inventory.backorder.backordered:
            state = "backordered"
        table.add_row(
            item.sku,
            *map(str, (total.on_hand, total.available, total.reserved, total.committed)),
            state,
        )
    console.print(table)
    console.print(f"{len(found)} SKU(s)")
