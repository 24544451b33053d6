"""purchase_limit: every customer shops from several sessions at once and tries to buy more
than the SKU's per-customer limit. Verdict: no customer committed above the limit (from the
ledger's committed rows), and plenty of stock was left, so the limit was what refused them.
"""

from __future__ import annotations

from collections import defaultdict

from loadtests.admin import Admin, SkuState
from loadtests.verdict import Verdict, client_matches, common_checks, totals

LIMIT = 3
SESSIONS_PER_CUSTOMER = 5


def skus(run_id: str) -> list[str]:
    return [f"{run_id}-pl"]


def seed(admin: Admin, run_id: str, units: int) -> None:
    body = {"locations": [{"location": "wh-1", "on_hand": units * 50}], "purchase_limit": LIMIT}
    admin.put_sku(skus(run_id)[0], body)


def verdict(
    state: dict[str, SkuState], counts: dict[str, int], units: int, failures: int
) -> Verdict:
    v = common_checks(state, failures)
    bought: dict[str, int] = defaultdict(int)
    for s in state.values():
        for row in s.ledger:
            if row["type"] == "committed":
                bought[row["customer_id"]] += row["d_committed"] or 0
    worst = max(bought.values(), default=0)
    v.facts.update(customers=len(bought), max_per_customer=worst, limit=LIMIT)
    over = {c: n for c, n in bought.items() if n > LIMIT}
    v.check(
        not over,
        f"{len(over)} customers above the limit of {LIMIT}: {dict(list(over.items())[:3])}",
    )
    v.check(bool(bought), "nobody bought anything: the run proves nothing")
    sold = totals(state, "committed")
    client_matches(v, sold, counts)
    return v
