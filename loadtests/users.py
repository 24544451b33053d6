"""The buyer base class every scenario's users share.

Refusals the engine is built to give (out of stock, purchase limit, expired hold) are the point of
the test, so they count as successes in Locust's stats; only unexpected answers (5xx, 4xx the
scenario never provokes) are failures, and any failure fails the verdict.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from locust import FastHttpUser, between

from loadtests import outcomes
from loadtests.settings import run_settings

# insufficient_stock, purchase_limit_exceeded, too_many_holds (409) and hold expired (410). Not 429:
# the load-test stack runs without rate limits, so a rate-limited request is a failure to report.
EXPECTED = {409, 410}


RUN_ID = run_settings().lt_run


def calm() -> bool:
    return run_settings().calm()


class Buyer(FastHttpUser):
    abstract = True
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.customer_id = f"{RUN_ID}-c-{uuid.uuid4().hex[:12]}"  # unique per simulated user
        self.headers = {"Authorization": f"Bearer {run_settings().lt_storefront_key}"}

    def reserve(
        self, lines: list[dict[str, Any]], ttl: int = 60, rid: str | None = None
    ) -> dict[str, Any] | None:
        """The reservation (201/200), or None after an expected refusal (counted by code)."""
        body: dict[str, Any] = {"customer_id": self.customer_id, "lines": lines, "ttl_seconds": ttl}
        if rid:
            body["reservation_id"] = rid
        with self.client.post(
            "/v1/reservations", json=body, headers=self.headers, name="reserve", catch_response=True
        ) as resp:
            if resp.status_code in (200, 201):
                return dict(resp.json())
            self._refused(resp)
            return None

    def commit(self, res: dict[str, Any]) -> bool:
        headers = {**self.headers, "X-Reservation-Token": res["reservation_token"]}
        order = {"order_id": f"o-{res['id']}"}
        with self.client.post(
            f"/v1/reservations/{res['id']}/commit",
            json=order,
            headers=headers,
            name="commit",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                outcomes.count("units_committed", sum(ln["quantity"] for ln in res["lines"]))
                return True
            self._refused(resp)
            return False

    def release(self, res: dict[str, Any]) -> None:
        headers = {**self.headers, "X-Reservation-Token": res["reservation_token"]}
        with self.client.delete(
            f"/v1/reservations/{res['id']}", headers=headers, name="release", catch_response=True
        ) as resp:
            if resp.status_code != 204:
                resp.failure(f"release answered {resp.status_code}")

    def _refused(self, resp: Any) -> None:
        if resp.status_code in EXPECTED:
            code = _code(resp)
            outcomes.count(f"refused_{code}")
            if calm():
                outcomes.count(f"refused_{code}_calm")
            resp.success()
        else:
            resp.failure(f"{resp.status_code}: {(resp.text or '')[:200]}")

    def pick(self, *weights: float) -> int:
        return random.choices(range(len(weights)), weights=weights)[0]


def _code(resp: Any) -> str:
    try:
        return str(resp.json().get("code", resp.status_code))
    except Exception:  # a refusal without a problem body still counts, by status
        return str(resp.status_code)
