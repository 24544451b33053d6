"""/v1/inventory/{sku}: levels (storefront), on_hand changes and the ledger (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query

from api.deps import Ctx, authenticate, require_admin
from api.openapi import problem_responses
from api.schemas.inventory import (
    AdjustmentIn,
    BackorderOut,
    InventoryOut,
    LevelOut,
    SetOnHandIn,
    StockLevelOut,
)
from api.schemas.ledger import TransactionOut, TransactionPage
from engine.errors import UnknownSku
from engine.types import ID_PATTERN, Level, SkuSnapshot

router = APIRouter(prefix="/v1/inventory", tags=["inventory"])

Sku = Annotated[str, Path(pattern=ID_PATTERN.pattern, max_length=64)]
Location = Annotated[str, Path(pattern=ID_PATTERN.pattern, max_length=64)]
_ADMIN_WRITE = (400, 401, 403, 404, 409, 413, 422, 429, 503)


@router.get(
    "/{sku}",
    dependencies=[Depends(authenticate)],
    responses=problem_responses(401, 404, 422, 429, 503),
)
async def inventory(sku: Sku, ctx: Ctx) -> InventoryOut:
    """Per location and in total; while out of stock but backorderable, when it would ship."""
    snapshot = await ctx.engine.inventory(sku)
    return InventoryOut(
        sku=sku,
        locations=[LevelOut.of(level) for level in snapshot.locations],
        total=LevelOut.of(snapshot.total),
        backorder=backorder_of(snapshot),
    )


@router.post(
    "/{sku}/adjustments",
    dependencies=[Depends(require_admin)],
    responses=problem_responses(*_ADMIN_WRITE),
)
async def adjust(
    sku: Sku,
    body: AdjustmentIn,
    ctx: Ctx,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=ID_PATTERN.pattern,
            max_length=64,
            description="A retried adjustment with the same key counts once.",
        ),
    ] = None,
) -> StockLevelOut:
    """Restock (`received`/`restock`, delta > 0) or adjust on_hand by a delta, with a reason."""
    engine = ctx.engine
    if body.delta > 0 and body.reason in ("received", "restock"):
        level = await engine.restock(
            sku,
            body.location,
            body.delta,
            reason=body.reason,
            reference=body.reference,
            idempotency_key=idempotency_key,
        )
    else:
        level = await engine.adjust(
            sku,
            body.location,
            body.delta,
            reason=body.reason,
            reference=body.reference,
            idempotency_key=idempotency_key,
        )
    return _stock_level(sku, level)


@router.put(
    "/{sku}/locations/{location}",
    dependencies=[Depends(require_admin)],
    responses=problem_responses(*_ADMIN_WRITE),
)
async def set_on_hand(sku: Sku, location: Location, body: SetOnHandIn, ctx: Ctx) -> StockLevelOut:
    """Set on_hand (a count); with change_from_quantity, only if on_hand is still that."""
    level = await ctx.engine.set_on_hand(
        sku,
        location,
        body.on_hand,
        reason=body.reason,
        reference=body.reference,
        change_from_quantity=body.change_from_quantity,
    )
    return _stock_level(sku, level)


@router.get(
    "/{sku}/transactions",
    dependencies=[Depends(require_admin)],
    responses=problem_responses(401, 403, 404, 422, 429, 503),
)
async def transactions(
    sku: Sku,
    ctx: Ctx,
    location: Annotated[str | None, Query(pattern=ID_PATTERN.pattern, max_length=64)] = None,
    cursor: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TransactionPage:
    """The Postgres ledger of this SKU, newest first (admin). 503 while no database is set."""
    # Without a database the answer is 503 whatever the SKU: don't let it read as a 404.
    if ctx.ledger.configured and await ctx.engine.sku_config(sku) is None:
        raise UnknownSku(sku=sku)
    rows, next_cursor = await ctx.ledger.page(sku, location=location, cursor=cursor, limit=limit)
    return TransactionPage(
        sku=sku,
        transactions=[TransactionOut.model_validate(row) for row in rows],
        next_cursor=next_cursor,
    )


def backorder_of(snapshot: SkuSnapshot) -> BackorderOut:
    """Backorder room is what locations may still sell below zero, down to -backorder_limit."""
    in_stock = sum(max(0, lvl.available) for lvl in snapshot.locations)
    room = sum(
        max(0, lvl.available + lvl.backorder_limit) - max(0, lvl.available)
        for lvl in snapshot.locations
    )
    lead_days = snapshot.config.backorder_lead_days
    backordered = in_stock <= 0 and room > 0
    message = None
    if backordered:
        message = f"ships in {lead_days} days" if lead_days > 0 else "backordered"
    return BackorderOut(
        backordered=backordered,
        units_available=room,
        lead_days=lead_days,
        ships_in_days=lead_days if backordered else None,
        message=message,
    )


def _stock_level(sku: str, level: Level) -> StockLevelOut:
    return StockLevelOut(sku=sku, **LevelOut.of(level).model_dump())
