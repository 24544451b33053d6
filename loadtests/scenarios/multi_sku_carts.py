"""multi_sku_carts: carts of 2-5 SKUs across two locations and several partitions; some commit,
some release, some expire. Verdict: every cart in the ledger holds all its SKUs or none (the
reservation id carries how many it asked for), nothing leaked, commits match the buyers' count.
"""

from __future__ import annotations

import random
import uuid

from locust import task

from loadtests.checks.multi_sku_carts import skus
from loadtests.users import RUN_ID, Buyer, calm


class CartBuyer(Buyer):
    @task
    def buy(self) -> None:
        picked = random.sample(skus(RUN_ID), random.randint(2, 5))
        lines = [
            {
                "sku": s,
                "quantity": random.randint(1, 2),
                "location": random.choice([None, "wh-1", "wh-2"]),
            }
            for s in picked
        ]
        choice = 0 if calm() else self.pick(70, 20, 10)  # commit, release, expire
        rid = f"{RUN_ID}-{uuid.uuid4().hex[:12]}-k{len(picked)}"  # k: the verdict's yardstick
        res = self.reserve(lines, ttl=1 if choice == 2 else 60, rid=rid)
        if res is None:
            return
        if choice == 0:
            self.commit(res)
        elif choice == 1:
            self.release(res)
