"""flash_sale: K units of one SKU, N >> K buyers at once; ~70% commit, the rest release or let
the hold expire. Verdict: never more than K sold, exactly K once demand outran supply, every
abandoned or expired hold back in stock, and the buyers' own commit count matches the server's.
"""

from __future__ import annotations

import random

from locust import task

from loadtests.checks.flash_sale import skus
from loadtests.users import RUN_ID, Buyer, calm


class FlashBuyer(Buyer):
    @task
    def buy(self) -> None:
        choice = 0 if calm() else self.pick(70, 15, 15)  # commit, release, expire
        ttl = 1 if choice == 2 else 60  # 1 s: the shortest hold the server accepts by default
        lines = [{"sku": skus(RUN_ID)[0], "quantity": random.randint(1, 2)}]
        res = self.reserve(lines, ttl=ttl)
        if res is None:
            return
        if choice == 0:
            self.commit(res)
        elif choice == 1:
            self.release(res)
