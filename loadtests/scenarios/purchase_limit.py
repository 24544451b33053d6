"""purchase_limit: every customer shops from several sessions at once and tries to buy more
than the SKU's per-customer limit. Verdict: no customer committed above the limit (from the
ledger's committed rows), and plenty of stock was left, so the limit was what refused them.
"""

from __future__ import annotations

import itertools
import os
import random

from locust import task

from loadtests.checks.purchase_limit import skus
from loadtests.users import RUN_ID, Buyer

SESSIONS_PER_CUSTOMER = 5
_sessions = itertools.count()


class LimitedBuyer(Buyer):
    def on_start(self) -> None:
        super().on_start()
        # Shared on purpose: SESSIONS_PER_CUSTOMER users race as one customer (pid: distributed).
        self.customer_id = f"{RUN_ID}-pl-{os.getpid()}-{next(_sessions) // SESSIONS_PER_CUSTOMER}"

    @task
    def buy(self) -> None:
        res = self.reserve([{"sku": skus(RUN_ID)[0], "quantity": random.randint(1, 2)}])
        if res is not None:
            self.commit(res) if random.random() < 0.9 else self.release(res)
