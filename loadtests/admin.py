"""The admin side of a run: seed SKUs, then read the final state once the worker has drained."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

_AGE = re.compile(r"^flashsale_stream_(oldest_unsynced_age_seconds|pending)\{[^}]*\} (\S+)$", re.M)


@dataclass
class SkuState:
    """One SKU at the end: the API's levels and every ledger row (oldest first)."""

    inventory: dict[str, Any]
    ledger: list[dict[str, Any]] = field(default_factory=list)


class Admin:
    def __init__(self, host: str, admin_key: str, storefront_key: str) -> None:
        self.http = httpx.Client(base_url=host.rstrip("/"), timeout=30)
        self.admin = {"Authorization": f"Bearer {admin_key}"}
        self.storefront = {"Authorization": f"Bearer {storefront_key}"}

    def close(self) -> None:
        self.http.close()

    def put_sku(self, sku: str, body: dict[str, Any]) -> None:
        self._ok(self.http.put(f"/v1/skus/{sku}", json=body, headers=self.admin))

    def inventory(self, sku: str) -> dict[str, Any]:
        return dict(self._ok(self.http.get(f"/v1/inventory/{sku}", headers=self.storefront)))

    def ledger(self, sku: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500}
        while True:
            page = self._ok(
                self.http.get(
                    f"/v1/inventory/{sku}/transactions", params=params, headers=self.admin
                )
            )
            rows.extend(page["transactions"])
            if page["next_cursor"] is None:
                return rows[::-1]  # the API pages newest first
            params["cursor"] = page["next_cursor"]

    def wait_settled(self, skus: list[str], timeout: float) -> None:
        """Holds reclaimed (nothing reserved) and the worker caught up, or TimeoutError.

        Lag is read from /metrics (the streams' pending entries and oldest unsynced event), the
        same numbers `flashsale worker status` prints, so this works against any host.
        """
        deadline = time.monotonic() + timeout
        while any(self.inventory(s)["total"]["reserved"] for s in skus):
            if time.monotonic() > deadline:
                raise TimeoutError("holds still reserved: is the sweeper running?")
            time.sleep(0.5)
        while not self.drained():
            if time.monotonic() > deadline:
                raise TimeoutError("the sync worker did not drain the streams")
            time.sleep(0.5)

    def drained(self) -> bool:
        values = [float(v) for _, v in _AGE.findall(self.http.get("/metrics").text)]
        return not any(values)

    def final_state(self, skus: list[str]) -> dict[str, SkuState]:
        return {s: SkuState(self.inventory(s), self.ledger(s)) for s in skus}

    @staticmethod
    def _ok(resp: httpx.Response) -> Any:
        if resp.status_code >= 300:
            raise RuntimeError(
                f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
            )
        return resp.json()
