"""flashsale's reservation engine: Lua scripts on Redis behind an async Python API."""

from engine.config import EngineSettings, load_settings
from engine.engine import ReservationEngine
from engine.types import (
    Allocation,
    CartLine,
    FulfilLine,
    Level,
    LocationConfig,
    Reservation,
    ReservationLine,
    SkuConfig,
    SkuSnapshot,
)

__all__ = [
    "Allocation",
    "CartLine",
    "EngineSettings",
    "FulfilLine",
    "Level",
    "LocationConfig",
    "Reservation",
    "ReservationEngine",
    "ReservationLine",
    "SkuConfig",
    "SkuSnapshot",
    "load_settings",
]
