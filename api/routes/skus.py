"""/v1/skus: list SKUs, read one, create or update its configuration (admin)."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from api.deps import Ctx, require_admin
from api.openapi import problem_responses
from api.routes.inventory import backorder_of
from api.schemas.inventory import InventoryOut, LevelOut
from api.schemas.skus import LocationIn, LocationOut, SkuDetailOut, SkuIn, SkuOut, SkuPage
from engine import catalog
from engine.catalog import CURSOR_PATTERN, CatalogCursor
from engine.types import ID_PATTERN, LocationConfig, SkuConfig, SkuSnapshot

router = APIRouter(prefix="/v1/skus", tags=["skus"])

Sku = Annotated[str, Path(pattern=ID_PATTERN.pattern, max_length=64)]
# Every member of a SKU's configuration but its locations, which merge by location.
_SCALARS = tuple(f.name for f in fields(SkuConfig) if f.name != "locations")


# A filtered page reads at most this many SKUs per requested one, so a filter that matches
# nothing costs a bounded amount of Redis work per call; the cursor carries on from there.
_FILTER_READ_FACTOR = 10


@router.get(
    "",
    dependencies=[Depends(require_admin)],
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def list_skus(
    ctx: Ctx,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN, max_length=40, description="next_cursor of the previous page."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    sold_out: Annotated[
        bool | None, Query(description="true: only sold out SKUs; false: only the others.")
    ] = None,
    low_stock: Annotated[
        bool | None, Query(description="true: only low-stock SKUs; false: only the others.")
    ] = None,
) -> SkuPage:
    """Every SKU with its configuration and levels, page by page (admin)."""
    engine = ctx.engine
    at = None if cursor is None else CatalogCursor.parse(cursor)
    filtered = sold_out is not None or low_stock is not None
    budget = limit * _FILTER_READ_FACTOR if filtered else limit
    found: list[SkuDetailOut] = []
    while True:
        names, at = await catalog.list_skus(engine, at, min(limit - len(found), budget))
        budget -= len(names)
        for snapshot in await catalog.snapshots(engine, names):
            detail = sku_detail(snapshot)
            if sold_out is not None and detail.sold_out != sold_out:
                continue
            if low_stock is not None and detail.low_stock != low_stock:
                continue
            found.append(detail)
        if at is None or len(found) >= limit or budget <= 0:
            return SkuPage(skus=found, next_cursor=None if at is None else str(at))


@router.get(
    "/{sku}",
    dependencies=[Depends(require_admin)],
    responses=problem_responses(401, 403, 404, 422, 429, 503),
)
async def read_sku(sku: Sku, ctx: Ctx) -> SkuDetailOut:
    """One SKU's configuration (as the PUT takes it) and its levels (as the inventory read)."""
    return sku_detail(await ctx.engine.inventory(sku))


def sku_detail(snapshot: SkuSnapshot) -> SkuDetailOut:
    inventory = InventoryOut(
        sku=snapshot.sku,
        locations=[LevelOut.of(level) for level in snapshot.locations],
        total=LevelOut.of(snapshot.total),
        backorder=backorder_of(snapshot),
    )
    available = snapshot.total.available
    threshold = snapshot.config.low_stock_threshold
    return SkuDetailOut(
        sku=snapshot.sku,
        config=sku_out(snapshot.sku, snapshot.config),
        inventory=inventory,
        sold_out=available <= 0 and inventory.backorder.units_available <= 0,
        low_stock=0 < available <= threshold,
    )


@router.put(
    "/{sku}",
    dependencies=[Depends(require_admin)],
    responses={
        201: {"model": SkuOut, "description": "The SKU was created"},
        **problem_responses(400, 401, 403, 409, 413, 422, 429, 503),
    },
)
async def configure_sku(sku: Sku, body: SkuIn, ctx: Ctx, response: Response) -> SkuOut:
    """Create (201) or update (200). Omitted members keep their current value.

    Read-merge-write: two admins editing one SKU at once may overwrite each other's members,
    which for stock configuration is the expected last-writer-wins.
    """
    current = await ctx.engine.sku_config(sku)
    created = await ctx.engine.configure_sku(sku, merged(body, current))
    response.status_code = 201 if created else 200
    snapshot = await ctx.engine.inventory(sku)
    return sku_out(sku, snapshot.config)


def merged(body: SkuIn, current: SkuConfig | None) -> SkuConfig:
    base = current or SkuConfig(locations=())
    given = body.model_fields_set
    scalars: dict[str, Any] = {name: getattr(body, name) for name in _SCALARS if name in given}
    if "locations" in given:
        old = {loc.location: loc for loc in base.locations}
        locations = tuple(_location(loc, old.get(loc.location)) for loc in body.locations)
    else:
        # on_hand None: the engine keeps the quantities (a config edit is not a stock count).
        locations = tuple(replace(loc, on_hand=None) for loc in base.locations)
    return replace(base, locations=locations, **scalars)


def _location(given: LocationIn, old: LocationConfig | None) -> LocationConfig:
    def pick(name: str) -> int:
        if name in given.model_fields_set or old is None:
            return int(getattr(given, name))
        return int(getattr(old, name))

    return LocationConfig(
        location=given.location,
        on_hand=given.on_hand,
        safety_stock=pick("safety_stock"),
        backorder_limit=pick("backorder_limit"),
        incoming=pick("incoming"),
    )


def sku_out(sku: str, config: SkuConfig) -> SkuOut:
    return SkuOut(
        sku=sku,
        locations=[
            LocationOut(
                location=loc.location,
                on_hand=loc.on_hand or 0,
                safety_stock=loc.safety_stock,
                backorder_limit=loc.backorder_limit,
                incoming=loc.incoming,
            )
            for loc in config.locations
        ],
        **{name: getattr(config, name) for name in _SCALARS},
    )
