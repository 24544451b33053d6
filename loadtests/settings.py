"""What a Locust process is told by the run that started it: FLASHSALE_LT_* variables, read once
by the project's one settings loader."""

from __future__ import annotations

import time
from functools import cache

from pydantic import BaseModel

from engine.config import load_settings


class LoadTestSettings(BaseModel):
    lt_run: str = "lt"  # prefixes SKUs and customers so runs never share stock
    lt_storefront_key: str = ""
    lt_admin_key: str = ""
    lt_units: int = 100
    # Unix time after which buyers only buy (no abandon, no expiry, no restock): the sale's last
    # seconds let returned units sell, so "sold out" is an exact, checkable end state.
    lt_calm_after: float = 0.0

    def calm(self) -> bool:
        return bool(self.lt_calm_after) and time.time() >= self.lt_calm_after


@cache
def run_settings() -> LoadTestSettings:
    return load_settings(LoadTestSettings)
