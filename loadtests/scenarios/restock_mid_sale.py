"""restock_mid_sale: an admin restocks and adjusts (cycle counts) while buyers race.
Verdict: sold never exceeds what was on hand (initial + restocked - written off, the ledger's
on_hand deltas), sold exactly that once buyers were still turned away at the end, no negatives.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from loadtests import outcomes
from loadtests.checks.restock_mid_sale import skus
from loadtests.settings import run_settings
from loadtests.users import RUN_ID, Buyer, calm


class RestockBuyer(Buyer):
    @task
    def buy(self) -> None:
        res = self.reserve([{"sku": skus(RUN_ID)[0], "quantity": random.randint(1, 2)}])
        if res is not None:
            self.commit(res) if calm() or random.random() < 0.85 else self.release(res)


class StockAdmin(FastHttpUser):
    fixed_count = 1  # one back-office user, however many buyers
    wait_time = between(0.3, 0.8)

    @task
    def change_stock(self) -> None:
        if calm():
            return  # the last seconds are for selling what is there
        headers = {"Authorization": f"Bearer {run_settings().lt_admin_key}"}
        # Only additions: the engine lets a write-off take on_hand below committed units (a
        # damaged unit is a fact, not a request), which is an oversell by decree, not a race.
        restock = random.random() < 0.7
        delta = random.randint(1, 5) if restock else random.randint(1, 2)
        body = {
            "location": "wh-1",
            "delta": delta,
            "reason": "restock" if restock else "cycle_count",
        }
        with self.client.post(
            f"/v1/inventory/{skus(RUN_ID)[0]}/adjustments",
            json=body,
            headers=headers,
            name="restock" if restock else "adjust",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                outcomes.count("units_added", delta)
            else:
                resp.failure(f"{resp.status_code}: {resp.text}")
