"""/v1/skus/{sku}: create or update a SKU's configuration (admin)."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from api.deps import Ctx, require_admin
from api.openapi import problem_responses
from api.schemas.skus import LocationIn, LocationOut, SkuIn, SkuOut
from engine.types import ID_PATTERN, LocationConfig, SkuConfig

router = APIRouter(prefix="/v1/skus", tags=["skus"])

Sku = Annotated[str, Path(pattern=ID_PATTERN.pattern, max_length=64)]
# Every member of a SKU's configuration but its locations, which merge by location.
_SCALARS = tuple(f.name for f in fields(SkuConfig) if f.name != "locations")


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
