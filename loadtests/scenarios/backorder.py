"""backorder: a SKU that may sell up to `backorder_limit` units beyond stock. Verdict: sold <=
on_hand + backorder_limit (exactly that once buyers were turned away at the end), and the units
sold beyond stock were reported as backordered on the reservations that took them.
"""

from __future__ import annotations

import random

from locust import task

from loadtests import outcomes
from loadtests.checks.backorder import skus
from loadtests.users import RUN_ID, Buyer, calm


class BackorderBuyer(Buyer):
    @task
    def buy(self) -> None:
        res = self.reserve([{"sku": skus(RUN_ID)[0], "quantity": random.randint(1, 3)}])
        if res is None:
            return
        if calm() or random.random() < 0.85:
            if self.commit(res):
                outcomes.count("units_backordered", sum(ln["backordered"] for ln in res["lines"]))
        else:
            self.release(res)
